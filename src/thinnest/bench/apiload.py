"""``thinnest bench api``: ``POST /voice/start`` throughput and latency under loopback load.

The API runs as ``thinnest serve --workers N`` (N API processes on one port, for each N of
``processes``) next to a real LiveKit server; the load comes from this process, an
``httpx.AsyncClient`` with ``concurrency`` requests in flight, until ``requests`` are done or
``seconds`` have passed (after a warm-up of 20 requests per API process that is not
counted). Each request is the whole start: the worker check, the agent lookup and the
session row in the database, LiveKit's room creation and agent dispatch (two RPCs to
livekit-server), the token. No worker takes the dispatches (none runs); a heartbeat row
written every 0.5 s stands in for one so that the API's worker check passes exactly as with
a live worker.

Runs on SQLite (a file) and PostgreSQL (Debian's server started in a temporary directory,
or ``postgres_url``). The same load is then timed against LiveKit's two RPCs alone
(:class:`~thinnest.livekit.rooms.LiveKitService` from this process), on the same stack
right after, for each process count: the ``/voice/start`` row carries ``livekit_ratio``,
its requests/s over LiveKit's alone (the target: ≥ 0.8). ``profile`` runs the API (one
process) under pyinstrument (event-loop thread) and keeps its text report.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import SecretStr

from thinnest.bench.latency import machine
from thinnest.bench.metrics import percentile
from thinnest.bench.stack import BenchStack, StackOptions
from thinnest.config import Settings
from thinnest.livekit.rooms import LiveKitService
from thinnest.store import workers
from thinnest.store.db import Database
from thinnest.store.postgres_server import start_postgres

__all__ = ["ApiBenchOptions", "run_api_bench"]

_WARMUP = 20
_DEFAULT_RATE_LIMIT_STORE = str(Settings.model_fields["rate_limit_store"].default)


@dataclass(frozen=True)
class ApiBenchOptions:
    """What to run.

    Attributes:
        requests: requests per database (at most).
        seconds: time limit per database.
        concurrency: requests in flight.
        processes: API process counts to run, each a stack of its own (``serve --workers``).
        rate_limit_store: the API's ``THINNEST_RATE_LIMIT_STORE`` (None: its default).
        databases: ``sqlite`` and/or ``postgresql``.
        postgres_url: use this PostgreSQL instead of starting one.
        profile: also run the API under pyinstrument (SQLite, a separate load).
        workdir: where the stacks keep their files.
    """

    requests: int = 1000
    seconds: float = 30.0
    concurrency: int = 16
    processes: tuple[int, ...] = (1,)
    rate_limit_store: str | None = None
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    postgres_url: str | None = None
    profile: bool = False
    workdir: Path | None = None


@contextlib.contextmanager
def _fake_worker(url: str, agent_name: str) -> Iterator[None]:
    """Heartbeats of a worker that takes no jobs, every 0.5 s, while the block runs."""
    stop = threading.Event()
    database = Database(url)
    worker_id = f"bench-{secrets.token_hex(3)}"

    def beat() -> None:
        while not stop.is_set():
            with database.session() as db:
                workers.heartbeat(
                    db, worker_id, agent_name=agent_name, host="bench", pid=0, max_jobs=100000
                )
            stop.wait(0.5)

    thread = threading.Thread(target=beat, daemon=True, name="bench-heartbeat")
    thread.start()
    try:
        time.sleep(0.6)
        yield
    finally:
        stop.set()
        thread.join(5)
        database.close()


def _cpu(stack: BenchStack) -> dict[str, Any]:
    """CPU seconds so far (user + system) of each API process (``serve --workers N``: its N
    spawned servers, not the supervisor) and of their main threads (the event loops; the
    rest is the thread pool's: database work, sync dependencies), of LiveKit and of this
    process (the load)."""

    def loop(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            for thread in proc.threads():
                if thread.id == proc.pid:
                    return float(thread.user_time + thread.system_time)
        return 0.0

    def seconds(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            return float(times.user + times.system)
        return 0.0

    api = psutil.Process(stack.children["api"].pid)
    servers = [
        p
        for p in api.children()
        if "spawn_main" in " ".join(p.cmdline())  # not multiprocessing's resource tracker
    ] or [api]
    livekit = stack.livekit.process if stack.livekit else None
    return {
        "api": {p.pid: seconds(p) for p in servers},
        "api_loop": sum(loop(p) for p in servers),
        "livekit": seconds(psutil.Process(livekit.pid)) if livekit else 0.0,
        "load": seconds(psutil.Process()),
    }


def _cpu_used(before: dict[str, Any], after: dict[str, Any], ok: int) -> dict[str, Any]:
    """What ``after - before`` used: each API process (most first), LiveKit, the load; and
    per answered request, in ms."""
    api = [after["api"][pid] - before["api"].get(pid, 0.0) for pid in after["api"]]
    used = {
        "api_loop": after["api_loop"] - before["api_loop"],
        "livekit": after["livekit"] - before["livekit"],
        "load": after["load"] - before["load"],
    }
    per = {"api": sum(api), **used}
    return {
        "api": [round(s, 2) for s in sorted(api, reverse=True)],
        **{name: round(s, 2) for name, s in used.items()},
        "ms_per_request": {name: round(1000 * s / max(ok, 1), 1) for name, s in per.items()},
    }


async def _load(
    call: Callable[[], Any], *, requests: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    """Run ``call`` ``requests`` times, ``concurrency`` at once, within ``seconds``."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    issued = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal issued
        while issued < requests and time.monotonic() < deadline:
            issued += 1
            start = time.perf_counter()
            try:
                status = await call()
            except Exception as exc:
                status = type(exc).__name__
            if status == 200:
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                failures[str(status)] = failures.get(str(status), 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "requests": issued,
        "ok": len(latencies),
        "failures": failures,
        "wall_s": round(wall, 3),
        "throughput_rps": len(latencies) / wall if wall else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else float("nan"),
        },
    }


def _env(options: ApiBenchOptions) -> dict[str, str]:
    env = {"THINNEST_LOG_LEVEL": "WARNING", "THINNEST_WORKER_HEARTBEAT_INTERVAL": "1.0"}
    if options.rate_limit_store:
        env["THINNEST_RATE_LIMIT_STORE"] = options.rate_limit_store
    return env


async def _run_one(
    database: str,
    url: str | None,
    options: ApiBenchOptions,
    settings: Settings,
    workdir: Path,
    processes: int,
) -> list[dict[str, Any]]:
    """``processes`` API processes: the load on ``/voice/start``, then on LiveKit alone."""
    stack_opts = StackOptions(workdir=workdir, database_url=url, worker=False, env=_env(options))
    rows = []
    stack = BenchStack(stack_opts, settings)
    stack.api_command = ["-m", "thinnest", "serve", "--workers", str(processes)]
    with stack:
        agent_id = stack.create_agent()
        with _fake_worker(stack.database_url, settings.agent_name):
            limits = httpx.Limits(max_connections=options.concurrency * 2)
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as http:
                headers = {"Authorization": f"Bearer {stack.api_key}"}
                body = {"agent_id": agent_id}

                async def start() -> int:
                    resp = await http.post("/voice/start", json=body, headers=headers)
                    return resp.status_code

                # Every process warms up (its first requests open connections, import lazily).
                await _load(
                    start,
                    requests=_WARMUP * processes,
                    seconds=60,
                    concurrency=max(4, 2 * processes),
                )
                before = _cpu(stack)
                result = await _load(
                    start,
                    requests=options.requests,
                    seconds=options.seconds,
                    concurrency=options.concurrency,
                )
                result["cpu_s"] = _cpu_used(before, _cpu(stack), result["ok"])
                result["api_errors_logged"] = stack.log_text("api").count("unhandled error")
                rows.append(
                    {
                        "database": database,
                        "what": "POST /voice/start",
                        "processes": processes,
                        **result,
                    }
                )
        lk_settings = settings.model_copy(
            update={
                "livekit_url": stack.livekit_url,
                "livekit_api_key": stack.lk_key,
                "livekit_api_secret": SecretStr(stack.lk_secret),
            }
        )
        service = LiveKitService(lk_settings)
        try:

            async def rooms() -> int:
                await service.create_session_room(f"bench-{secrets.token_hex(8)}", {"x": 1})
                return 200

            await _load(rooms, requests=_WARMUP, seconds=60, concurrency=4)  # as the API's
            before = _cpu(stack)
            result = await _load(
                rooms,
                requests=options.requests,
                seconds=options.seconds,
                concurrency=options.concurrency,
            )
            result["cpu_s"] = _cpu_used(before, _cpu(stack), result["ok"])
        finally:
            await service.aclose()
        rows.append(
            {
                "database": database,
                "what": "LiveKit room + dispatch only",
                "processes": processes,
                **result,
            }
        )
    ours, livekit = rows
    ours["livekit_ratio"] = (
        ours["throughput_rps"] / livekit["throughput_rps"] if livekit["throughput_rps"] else 0.0
    )
    return rows


async def _profile(options: ApiBenchOptions, settings: Settings, workdir: Path) -> str:
    """The API's event-loop thread under pyinstrument during a short SQLite load."""
    report = workdir / "pyinstrument.txt"
    stack_opts = StackOptions(workdir=workdir, worker=False, env=_env(options))
    stack = BenchStack(stack_opts, settings)
    stack.api_command = [
        "-m",
        "pyinstrument",
        "-r",
        "text",
        "--no-color",
        "-o",
        str(report),
        "-m",
        "thinnest",
        "serve",
    ]
    with stack:
        agent_id = stack.create_agent()
        with _fake_worker(stack.database_url, settings.agent_name):
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
                headers = {"Authorization": f"Bearer {stack.api_key}"}

                async def start() -> int:
                    resp = await http.post(
                        "/voice/start", json={"agent_id": agent_id}, headers=headers
                    )
                    return resp.status_code

                await _load(
                    start,
                    requests=min(options.requests, 500),
                    seconds=options.seconds,
                    concurrency=options.concurrency,
                )
        # Ctrl-C: uvicorn stops, then pyinstrument renders its report (slow on a busy
        # machine: give it time before the stack's stop would kill it).
        api = stack.children["api"]
        api.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(api.wait, 180)
    return report.read_text(errors="replace") if report.exists() else ""


async def run_api_bench(
    options: ApiBenchOptions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run the load on each database; returns the results (see ``docs/benchmarks.md``)."""
    started = time.time()
    base = options.workdir or settings.data_dir / "bench" / f"api-{int(started)}"
    runs: list[dict[str, Any]] = []
    for database in options.databases:

        async def each(url: str | None, database: str = database) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            for n in options.processes:
                progress(f"{database}: LiveKit and {n} API process(es)")
                workdir = base / f"{database}-{n}"
                rows += await _run_one(database, url, options, settings, workdir, n)
            return rows

        if database == "sqlite":
            runs += await each(None)
            continue
        if options.postgres_url:
            runs += await each(options.postgres_url)
            continue
        pg_dir = Path(tempfile.mkdtemp(prefix="thinnest-bench-pg-"))
        url, stop = start_postgres(pg_dir)
        try:
            runs += await each(url)
        finally:
            stop()
            shutil.rmtree(pg_dir, ignore_errors=True)
    profile = ""
    if options.profile:
        progress("profiling the API (pyinstrument)")
        profile = await _profile(options, settings, base / "profile")
    for row in runs:
        row["concurrency"] = options.concurrency
        # The stack's API gets no THINNEST_* of this process: its default unless set.
        row["rate_limit_store"] = options.rate_limit_store or _DEFAULT_RATE_LIMIT_STORE
    return {
        "bench": "api",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "options": {**asdict(options), "workdir": str(base)},
        "runs": runs,
        "profile": profile,
    }
