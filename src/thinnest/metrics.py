"""Prometheus metrics: every metric Thinnest exports, defined here once (docs/metrics.md).

Two kinds of process count them:

* **Call processes** (a worker's job processes, one call each) count calls, turn latencies,
  provider errors and tool calls. Their metrics are registered nowhere (``registry=None``):
  the worker starts them with ``PROMETHEUS_MULTIPROC_DIR`` set, so prometheus_client's
  multiprocess mode writes each process's values to files there, and the worker's
  ``/metrics`` (:mod:`thinnest.engine.scrape`) sums the files of all its call processes, the
  ended ones included. Without that directory (metrics off) they count in memory, unread.
* **The API** counts HTTP requests, voice starts and the sessions it finalises in
  :data:`API_REGISTRY`, served by its ``/metrics`` route (:mod:`thinnest.api.routes.metrics`).
  ``thinnest serve --workers N`` runs its processes in multiprocess mode too, so that any of
  them answers a scrape with the counts of all.

Multiprocess mode is chosen by ``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client is first
imported; the process that starts the others sets it (:func:`multiprocess_dir`), and reads
it back here (:func:`shared_dir`): it is the library's variable, not a Thinnest setting.

Live figures (a worker's active calls and capacity, the live workers' slots) are read when
scraped, not counted, so they are never stale.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, Metric, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "API_REGISTRY",
    "CALLS_ENDED",
    "CALLS_STARTED",
    "HTTP_REQUEST_DURATION",
    "PREFIX",
    "ProcessFiles",
    "PROVIDER_ERRORS",
    "SESSIONS_FINALISED",
    "TOOL_CALLS",
    "TURN_LATENCY",
    "VOICE_STARTS",
    "WEBHOOK_ATTEMPTS",
    "compact",
    "multiprocess_dir",
    "shared_dir",
]

#: Every Thinnest metric's name starts so.
PREFIX = "thinnest_"

# --- call processes (prometheus_client's multiprocess files, read by the worker) --------------

CALLS_STARTED = Counter(
    "thinnest_calls_started",
    "Calls a worker's call processes took (dispatches whose job began)",
    registry=None,
)
CALLS_ENDED = Counter(
    "thinnest_calls_ended",
    "Calls ended, by end reason (user_left, agent_ended, max_duration, no_show, ...)",
    ["reason"],
    registry=None,
)
#: The stages are the turn latency fields the engine stores with each turn and sends in its
#: ``metrics`` events (contracts.events.LATENCY_KEYS): the same numbers, observed once.
TURN_LATENCY = Histogram(
    "thinnest_turn_latency_seconds",
    "Turn latency by stage: end_of_turn_delay, stt, llm_ttft, tts_ttfb, voice_to_voice",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    registry=None,
)
PROVIDER_ERRORS = Counter(
    "thinnest_provider_errors",
    "STT/LLM/TTS errors by kind, provider and error (timeout, status, connection, other); "
    "final=true once the provider gave up after its retries and the turn failed",
    ["kind", "provider", "error", "final"],
    registry=None,
)
TOOL_CALLS = Counter(
    "thinnest_tool_calls",
    "Tool calls the LLM made, by outcome (ok or error: the tool failed or timed out)",
    ["outcome"],
    registry=None,
)

# --- the API (in each API process's memory) ---------------------------------------------------

#: What the API's ``/metrics`` serves besides the process's own figures.
API_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUEST_DURATION = Histogram(
    "thinnest_http_request_duration_seconds",
    "API request durations by method, route template and status code",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=API_REGISTRY,
)
VOICE_STARTS = Counter(
    "thinnest_voice_starts",
    "POST /voice/start answers by status code (200 started; 429, 503 no_capacity, ...)",
    ["status"],
    registry=API_REGISTRY,
)
SESSIONS_FINALISED = Counter(
    "thinnest_api_sessions_finalised",
    "Sessions the API finalised itself (its end route, the backstop), by end reason",
    ["reason"],
    registry=API_REGISTRY,
)

WEBHOOK_ATTEMPTS = Counter(
    "thinnest_webhook_attempts",
    "Webhook delivery attempts by result (delivered; retry: failed, to be retried; failed: "
    "failed for good) and error (none, status, timeout, connection, refused, disabled, other)",
    ["result", "error"],
    registry=API_REGISTRY,
)

# --- multiprocess mode ------------------------------------------------------------------------


@contextlib.contextmanager
def multiprocess_dir(prefix: str) -> Iterator[str]:
    """A fresh directory for metric files, named in ``PROMETHEUS_MULTIPROC_DIR`` for the
    processes started from now on (enter it before the first); removed after."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def shared_dir() -> str | None:
    """This process's metric files' directory where it counts in multiprocess mode (it was
    started inside :func:`multiprocess_dir`); None where it counts in memory."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class ProcessFiles(Collector):
    """The Thinnest metrics of every process that writes to ``path``, summed (the files may
    hold livekit-agents' own metrics too, which a process's own registry already has)."""

    def __init__(self, path: str) -> None:
        self._files = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        return [m for m in self._files.collect() if m.name.startswith(PREFIX)]


#: The file types whose values add up across processes (a gauge's do not: left alone).
_SUMMED = ("counter", "histogram")


def compact(path: str) -> int:
    """Fold the counter and histogram files of processes that ended into ``<type>_ended.db``
    (values of the same series added up, as a scrape would) and delete them, so that a
    scrape reads two files, not one per process that ever ran.

    Args:
        path: the multiprocess directory.

    Returns:
        How many files were folded.
    """
    folded = 0
    archives: dict[str, MmapedDict] = {}
    try:
        for name in sorted(os.listdir(path)):
            kind, _, pid = name.removesuffix(".db").partition("_")
            if kind not in _SUMMED or not pid.isdigit() or _alive(int(pid)):
                continue
            if kind not in archives:
                archives[kind] = MmapedDict(os.path.join(path, f"{kind}_ended.db"))
            archive = archives[kind]
            file = os.path.join(path, name)
            for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(file):
                total, _ = archive.read_value(key)
                archive.write_value(key, total + value, timestamp)
            os.unlink(file)
            folded += 1
    finally:
        for archive in archives.values():
            archive.close()
    return folded


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process under a reused pid: not ours to fold
        return True
    return True
