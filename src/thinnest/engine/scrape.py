"""A worker's Prometheus ``/metrics``: its own figures and those of its call processes.

Calls run in job processes, one call each, that come and go. Their counts reach the worker
through prometheus_client's multiprocess mode: :func:`thinnest.metrics.multiprocess_dir` sets
``PROMETHEUS_MULTIPROC_DIR`` before livekit-agents starts its process server, so every call
process writes its values to files there (memory-mapped: no socket, no message to lose, and a
call process that crashes keeps what it counted). A scrape sums the files of every process,
ended ones included, which counters and histograms need. Sending the figures over a channel
to the worker instead would need a message type livekit-agents' process protocol does not
have. The worker's own process keeps its values in memory (it imported prometheus_client
before the variable was set); its live figures (active calls, capacity) are read at scrape
time from livekit-agents' job list, so they cannot go stale.

Each call process leaves its files behind (its counts must outlive it). So that a worker that
ran many calls does not read thousands of files per scrape, :func:`thinnest.metrics.compact`
folds the files of processes that ended into one file per metric type before each scrape.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Metric,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from thinnest.log import logger
from thinnest.metrics import ProcessFiles, compact

__all__ = ["MetricsServer", "WorkerLoad"]

log = logger.getChild("engine")


class WorkerLoad(Collector):
    """The worker's live figures, read when scraped.

    Args:
        active: the calls the worker holds now (running or starting).
        capacity: the calls it takes at once.
    """

    def __init__(self, active: Callable[[], int], capacity: int) -> None:
        self._active = active
        self._capacity = capacity

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "thinnest_worker_active_calls",
            "Calls this worker holds now (running, or accepted and starting)",
            value=self._active(),
        )
        yield GaugeMetricFamily(
            "thinnest_worker_capacity_calls",
            "Calls this worker takes at once (THINNEST_WORKER_MAX_JOBS or measured)",
            value=self._capacity,
        )


class MetricsServer:
    """``GET /metrics`` on ``host:port``: the worker process's registry (livekit-agents'
    worker metrics, the process's CPU and memory), ``load``, and the call processes' files.

    Args:
        host: the address to bind.
        port: the port to bind.
        load: the worker's live figures.
        files: the call processes' ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(self, *, host: str, port: int, load: WorkerLoad, files: str) -> None:
        self.host, self.port = host, port
        self._live = CollectorRegistry(auto_describe=False)
        self._live.register(load)
        self._files = files
        self._calls = CollectorRegistry(auto_describe=False)
        self._calls.register(ProcessFiles(files))
        self._lock = threading.Lock()  # one scrape at a time folds and reads the files
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        # The live figures are read on the event loop (livekit-agents' job list lives there);
        # the files, a disk read per call process, in a thread.
        live = generate_latest(REGISTRY) + generate_latest(self._live)
        calls = await asyncio.to_thread(self._read_calls)
        return web.Response(body=live + calls, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _read_calls(self) -> bytes:
        with self._lock:
            compact(self._files)
            return generate_latest(self._calls)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("worker metrics at http://%s:%d/metrics", self.host, self.port)

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
