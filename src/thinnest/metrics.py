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

Live figures (a worker's active calls and capacity, the live workers' slots) are read when
scraped, not counted, so they are never stale.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "API_REGISTRY",
    "CALLS_ENDED",
    "CALLS_STARTED",
    "HTTP_REQUEST_DURATION",
    "PREFIX",
    "PROVIDER_ERRORS",
    "SESSIONS_FINALISED",
    "TOOL_CALLS",
    "TURN_LATENCY",
    "VOICE_STARTS",
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
