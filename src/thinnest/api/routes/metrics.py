"""The API's Prometheus ``/metrics`` and the middleware that times its requests.

A scrape answers this API process's counters (:data:`thinnest.metrics.API_REGISTRY`: request
durations by route template, voice starts by status, the sessions it finalised), its own
process figures, and the live workers' calls and capacity as their last heartbeats stored
them. Under ``thinnest serve --workers N`` the processes count in prometheus_client's
multiprocess files (``thinnest.metrics.multiprocess_dir``), and whichever process answers a
scrape sums them all. ``THINNEST_METRICS_ENABLED=false`` removes the route.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Metric,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinnest.api.deps import DatabaseDep, SettingsDep
from thinnest.config import Settings
from thinnest.log import logger
from thinnest.metrics import (
    API_REGISTRY,
    HTTP_REQUEST_DURATION,
    VOICE_STARTS,
    ProcessFiles,
    compact,
    shared_dir,
)
from thinnest.store import workers
from thinnest.store.db import Database

__all__ = ["RequestMetrics", "router"]

log = logger.getChild("api")

router = APIRouter(tags=["metrics"])

_VOICE_START = "/voice/start"

_folding = threading.Lock()  # one scrape at a time folds and reads the shared files


class _LiveWorkers(Collector):
    """The live workers' figures, as read from their heartbeat rows."""

    def __init__(self, rows: list[tuple[int, int]]) -> None:
        self._rows = rows  # (active_jobs, max_jobs) of each live worker

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "thinnest_workers_live",
            "Voice engine workers alive (heartbeats)",
            value=len(self._rows),
        )
        yield GaugeMetricFamily(
            "thinnest_workers_active_calls",
            "Calls the live workers hold, summed from their last heartbeats",
            value=sum(active for active, _ in self._rows),
        )
        yield GaugeMetricFamily(
            "thinnest_workers_capacity_calls",
            "Calls the live workers take at once, summed",
            value=sum(most for _, most in self._rows),
        )


def _live_workers(db: Database, settings: Settings) -> list[tuple[int, int]]:
    with db.session() as session:
        rows = workers.live_workers(
            session, settings.agent_name, within=3 * settings.worker_heartbeat_interval
        )
        return [(w.active_jobs, w.max_jobs) for w in rows]


def _api_counts() -> bytes:
    """The API's counters: this process's, or every API process's where they share files."""
    path = shared_dir()
    if path is None:
        return generate_latest(API_REGISTRY)
    files = CollectorRegistry(auto_describe=False)
    files.register(ProcessFiles(path))
    with _folding:
        compact(path)  # processes uvicorn replaced
        return generate_latest(files)


@router.get("/metrics", include_in_schema=False)
async def metrics(db: DatabaseDep, settings: SettingsDep) -> Response:
    """Prometheus metrics of this API process and of the live workers."""
    body = generate_latest(REGISTRY) + await run_in_threadpool(_api_counts)
    try:
        rows = await run_in_threadpool(_live_workers, db, settings)
    except Exception as exc:  # the database is down: the process's own figures still answer
        log.warning("metrics: live workers not read: %r", exc)
    else:
        live = CollectorRegistry(auto_describe=False)
        live.register(_LiveWorkers(rows))
        body += generate_latest(live)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware: each HTTP request's duration by method, route template (``/agents/{
    agent_id}``, never the raw path: ids would make a series each) and status; and
    ``POST /voice/start``'s answers by status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # what an exception that escapes every handler becomes

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:  # refused before routing (a body too large): no template
                route = _VOICE_START if scope["path"] == _VOICE_START else "unmatched"
            HTTP_REQUEST_DURATION.labels(
                method=scope["method"], route=route, status=str(status[0])
            ).observe(time.perf_counter() - started)
            if route == _VOICE_START and scope["method"] == "POST":
                VOICE_STARTS.labels(status=str(status[0])).inc()
