"""``thinnest worker``: a livekit-agents worker for explicit dispatch under the agent name.

Jobs run in prewarmed child processes (models loaded once). SIGTERM / SIGINT drain the
worker: calls in progress finish, no new ones are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from livekit.agents import AgentServer, JobContext, JobProcess, JobRequest

from thinnest.config import Settings
from thinnest.engine.job import entrypoint
from thinnest.engine.scrape import MetricsServer, WorkerLoad
from thinnest.engine.warmup import prewarm
from thinnest.log import logger
from thinnest.metrics import multiprocess_dir
from thinnest.providers.modelservice import models_status
from thinnest.store import workers
from thinnest.store.db import Database

log = logger.getChild("engine")

#: Seconds between looks at the worker's count of calls (a change is reported at once).
_LOAD_POLL = 0.25


class Claims:
    """Rooms of the calls a worker accepted and is still starting: a call waits here for a
    job process (a new one takes a while to load its models), not yet in ``active_jobs``."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()

    async def on_request(self, request: JobRequest) -> None:
        room = request.room.name
        self.rooms.add(room)
        # Forgotten when the request's task is done: after livekit-agents frees the slot it
        # reserved for the call (its done callback, added first), so a call never drops out
        # of both counts while it starts.
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - livekit-agents runs this in a task
            self.rooms.discard(room)
            await request.accept()
            return
        task.add_done_callback(lambda _task: self.rooms.discard(room))
        await request.accept()  # returns once the job runs in a process


class SlotServer(AgentServer):
    """An ``AgentServer`` that counts its load in calls, the ones it is accepting included.

    Before it answers LiveKit's offer of a call, livekit-agents checks its load plus an
    estimate for each call it has said yes to and not yet launched (a "reserved slot").
    With no call running, it estimates each at ``load_threshold / num_idle_processes``: with
    2 idle processes, two calls being accepted made the worker look full, and a third call
    offered in that moment (calls started together) was refused. LiveKit does not offer a
    refused call again, so it got no agent ("no greeting"). Here a call being accepted
    weighs what a running one does: the worker refuses only when its slots are taken."""

    def __init__(self, *, max_jobs: int, claims: Claims, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_jobs = max_jobs
        self.claims = claims

    def calls_taken(self) -> int:
        """Calls running or being accepted, each once: a call's job is running a moment
        before livekit-agents frees the slot it reserved, so calls are counted by room; a
        slot reserved before its request reached :class:`Claims` counts on its own."""
        reserved = getattr(self, "_reserved_slots", 0)
        return len(_rooms(self, self.claims)) + max(0, reserved - len(self.claims.rooms))

    def _get_effective_load(self) -> float:
        return FULL_LOAD * self.calls_taken() / self.max_jobs


if not hasattr(AgentServer, "_get_effective_load"):  # pragma: no cover - another version
    log.warning(
        "this livekit-agents has no _get_effective_load: calls offered together may be "
        "refused (see SlotServer)"
    )


def build_server(
    settings: Settings,
    *,
    setup_fnc: Callable[[JobProcess], Any] = prewarm,
    entrypoint_fnc: Callable[[JobContext], Awaitable[None]] = entrypoint,
    agent_name: str | None = None,
    claims: Claims | None = None,
) -> AgentServer:
    """A livekit-agents server for our engine (or, for ``thinnest bench``, another one) with
    the worker's settings: prewarmed processes, capacity counted in calls, loopback HTTP;
    ``claims`` collects the calls it accepted and is starting."""
    key, secret = settings.livekit_credentials()
    max_jobs = capacity(settings)
    claims = claims if claims is not None else Claims()
    server = SlotServer(
        max_jobs=max_jobs,
        claims=claims,
        ws_url=settings.livekit_url,
        api_key=key,
        api_secret=secret,
        setup_fnc=setup_fnc,
        num_idle_processes=settings.worker_idle_processes,
        initialize_process_timeout=120.0,
        # Capacity is counted in calls, not CPU: on a small machine the CPU is busy in any
        # call, and a CPU threshold would refuse work that fits. Scaled so a full worker
        # reports FULL_LOAD: LiveKit sends no call to a worker at its target_load.
        load_fnc=lambda srv: FULL_LOAD * len(srv.active_jobs) / max_jobs,
        load_threshold=FULL_LOAD,
        port=0,
        host="127.0.0.1",
        log_level=settings.log_level.upper(),
        # Imported once in the forkserver: every job process shares the engine's code (and
        # what it imports) copy-on-write instead of importing its own copy.
        preload_modules=[
            entrypoint_fnc.__module__,
            setup_fnc.__module__,
            # The shared LLM's client: importing it was 2 of a job process's 2.6 prewarm
            # CPU-seconds (a module that is not installed is skipped).
            *(["livekit.plugins.openai"] if settings.models_url else []),
        ],
    )
    server.rtc_session(
        entrypoint_fnc,
        agent_name=agent_name or settings.agent_name,
        on_request=claims.on_request,
    )
    return server


#: The load a worker reports when all its slots are taken (it says FULL from there). LiveKit
#: sends a call only to a worker whose load is below the server's ``agents.target_load``, 0.7
#: unless configured: a worker of 4 slots that reported 3/4 = 0.75 got no 4th call. Below
#: every target a LiveKit server is likely to set, a worker with a free slot gets its call.
FULL_LOAD = 0.5

#: How often livekit-agents tells LiveKit a worker's load and status (its UPDATE_STATUS_INTERVAL).
STATUS_INTERVAL = 2.5

#: What one call costs the machine, measured by `thinnest bench concurrency` on 2 cores
#: (docs/benchmarks.md): a core share (the engine's and the model services' work, with the
#: caller's side of WebRTC beside it), and memory with shared model services or with the
#: models in each job process.
CORES_PER_CALL = 0.5
MB_PER_CALL = {"shared": 200, "in_process": 900}


def capacity(settings: Settings) -> int:
    """The calls this worker takes at once: ``worker_max_jobs``, else what the machine's
    cores and free memory hold at the measured cost of a call."""
    if settings.worker_max_jobs is not None:
        return settings.worker_max_jobs
    cores = len(os.sched_getaffinity(0))
    per_call = MB_PER_CALL["shared" if settings.models_url else "in_process"]
    return max(1, min(int(cores / CORES_PER_CALL), int(_available_mb() / per_call)))


def _available_mb() -> float:
    """Memory the machine can give without swapping (Linux's MemAvailable), MB."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1000
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e6


async def _tell_livekit_our_load(server: AgentServer) -> None:
    """Send LiveKit this worker's load and status now, not at livekit-agents' next periodic
    update (every 2.5 s); where this livekit-agents lacks the means, wait for that update."""
    refresh = getattr(server, "_refresh_worker_load", None)
    update = getattr(server, "_update_worker_status", None)
    if refresh is None or update is None:
        await asyncio.sleep(STATUS_INTERVAL + 0.5)
        return
    try:
        await refresh()
        await update()
    except Exception as exc:  # not connected: the periodic update says it later
        log.debug("worker status not sent at once: %r", exc)
        await asyncio.sleep(STATUS_INTERVAL + 0.5)
        return
    await asyncio.sleep(0.1)  # on its way over the worker's WebSocket before the API hears


def _rooms(server: AgentServer, claims: Claims) -> list[str]:
    """The rooms (session ids) of the calls the worker holds: running or starting."""
    return sorted({job.job.room.name for job in server.active_jobs} | claims.rooms)


async def _heartbeat(
    server: AgentServer, claims: Claims, settings: Settings, worker_id: str
) -> None:
    """Tell the API this worker is alive (and how busy) until cancelled, then say goodbye."""
    database = Database(settings.resolved_database_url)
    fields = {
        "agent_name": settings.agent_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "max_jobs": capacity(settings),
    }

    models_seen = [""]

    def beat(rooms: list[str]) -> None:
        models = models_status(settings)
        if models != models_seen[0]:
            if models in ("", "ok"):
                log.info("model services: %s", models or "in process")
            else:
                log.error("model services unusable, taking no calls: %s", models)
            models_seen[0] = models
        with database.session() as db:
            workers.heartbeat(
                db,
                worker_id,
                active_jobs=len(rooms),
                session_ids=rooms,
                models_status=models,
                **fields,
            )

    def forget() -> None:
        with database.session() as db:
            workers.forget(db, worker_id)

    announced = False
    reported: list[str] | None = None
    try:
        while True:
            rooms = _rooms(server, claims)
            if reported is not None and set(reported) - set(rooms):
                # A slot freed: LiveKit must know before the API counts it, or a call the API
                # admits meanwhile is dispatched to a worker LiveKit still thinks full, and
                # LiveKit drops that dispatch for good (no agent ever joins).
                await _tell_livekit_our_load(server)
            try:
                await asyncio.to_thread(beat, rooms)
            except Exception as exc:  # the database is busy or not migrated yet: next time
                log.warning("worker heartbeat failed: %r", exc)
            else:
                reported = rooms
                if not announced:
                    # Only now does the API count this worker (`no_worker` until then).
                    log.info("worker live: first heartbeat stored as %s", worker_id)
                    announced = True
            # A call taken or ended is reported at once (the API counts free slots from
            # these rows), unchanged calls every `worker_heartbeat_interval`.
            for _ in range(max(1, math.ceil(settings.worker_heartbeat_interval / _LOAD_POLL))):
                await asyncio.sleep(_LOAD_POLL)
                if _rooms(server, claims) != reported:
                    break
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(forget)
        database.close()


async def _serve(settings: Settings, metrics_files: str | None = None) -> None:
    claims = Claims()
    server = build_server(settings, claims=claims)
    metrics = None
    if metrics_files is not None:
        load = WorkerLoad(lambda: len(_rooms(server, claims)), capacity(settings))
        metrics = MetricsServer(
            host=settings.worker_metrics_host,
            port=settings.worker_metrics_port,
            load=load,
            files=metrics_files,
        )
        await metrics.start()
    worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(server.run(devmode=False))
    stopped = asyncio.create_task(stop.wait())
    beating: list[asyncio.Task[None]] = []
    # Heartbeats start once LiveKit has registered the worker: only then can it take calls.
    server.on(
        "worker_registered",
        lambda *_: (
            beating.append(asyncio.create_task(_heartbeat(server, claims, settings, worker_id)))
            if not beating
            else None
        ),
    )
    await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in beating:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if not run.done():
        wait = settings.worker_drain_timeout
        log.info("draining the worker: its calls have %.0f s to end; it takes no new one", wait)
        try:
            await asyncio.wait_for(server.drain(timeout=int(wait)), wait + 5)
        except TimeoutError:
            log.warning("drain timed out: the calls still running are cut")
    await server.aclose()
    run.cancel()
    if metrics is not None:
        await metrics.aclose()


def run_worker(settings: Settings) -> None:
    # Nothing downloads at run time: the models ship in installed packages.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not settings.worker_metrics_port:
        asyncio.run(_serve(settings))
        return
    # Before the job processes start: they inherit it.
    with multiprocess_dir("thinnest-worker-metrics-") as files:
        asyncio.run(_serve(settings, files))
