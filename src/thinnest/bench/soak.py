"""``thinnest bench soak``: short calls one after another for a bounded time; what leaks.

The bench starts its own stack (LiveKit server, API, worker: :class:`BenchStack`). Each call
goes through ``/voice/start``; a :class:`~thinnest.bench.probe.ProbeClient` waits for the
greeting, says one utterance, times the answer and hangs up, and the session must then be
stored as finished (``ended``, ``user_left``). After a warm-up call (first-call allocations
are not a leak) and again after the last call, once the worker has settled (its idle job
processes prewarmed again), it snapshots the worker's process tree: process count, RSS of
the main process and of the tree, open file descriptors; and LiveKit's list of the soak's
rooms. The verdict uses the same bounds as the CI soak test (``tests/engine/test_soak.py``),
which runs one minute of this; the bench's default is ten.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from livekit import api as lkapi
from thinnest.bench.latency import GREETING, INSTRUCTIONS, STACKS, _audio, machine
from thinnest.bench.metrics import percentile
from thinnest.bench.probe import ProbeClient
from thinnest.bench.stack import BenchStack, StackOptions
from thinnest.config import Settings
from thinnest.contracts.session import FINAL_STATUSES, EndReason, SessionStatus
from thinnest.errors import ConfigError

__all__ = ["SoakOptions", "run_soak_bench"]

#: Bounds of the verdict (the CI soak test's): worker main-process RSS growth over the soak
#: and per call, file descriptors, and nothing else left behind.
MAX_MAIN_RSS_GROWTH_MB = 64.0
MAX_RSS_GROWTH_PER_CALL_MB = 4.0
MAX_FD_GROWTH = 16


@dataclass(frozen=True)
class SoakOptions:
    """What to run.

    Attributes:
        seconds: how long new calls are started (the last one finishes after).
        stack: provider set (``fixed``: known delays, the engine's own cost; ``offline``).
        max_calls: stop after this many calls even before ``seconds``.
        quiet: seconds of agent silence that end an answer.
        workdir: where the stack keeps its files.
    """

    seconds: float = 600.0
    stack: str = "fixed"
    max_calls: int = 10_000
    quiet: float = 1.0
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if self.stack not in STACKS:
            raise ConfigError(f"unknown stack {self.stack!r}: {', '.join(STACKS)}", field="stack")
        if not 0 < self.seconds <= 24 * 3600:
            raise ConfigError("seconds must be between 0 and 86400", field="seconds")
        if self.max_calls < 1:
            raise ConfigError("max_calls must be at least 1", field="max_calls")


def _snapshot(pid: int) -> dict[str, float]:
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    rss = 0
    for proc in tree:
        try:
            rss += proc.memory_info().rss
        except psutil.Error:  # a job process that ended meanwhile
            continue
    return {
        "processes": len(tree),
        "main_rss_mb": round(root.memory_info().rss / 2**20, 1),
        "tree_rss_mb": round(rss / 2**20, 1),
        "worker_fds": root.num_fds(),
    }


async def _settled(pid: int, processes: float | None, within: float = 90) -> dict[str, float]:
    """The worker at rest: as many processes as ``processes`` (its idle job processes
    respawned), then two seconds more."""
    deadline = time.monotonic() + within
    snap = _snapshot(pid)
    while processes is not None and snap["processes"] != processes:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
        snap = _snapshot(pid)
    await asyncio.sleep(2)
    return _snapshot(pid)


async def _final(http: httpx.AsyncClient, stack: BenchStack, session_id: str) -> dict[str, Any]:
    """The stored session once finished (or as it stands after 60 s)."""
    row: dict[str, Any] = {}
    for _ in range(120):
        resp = await http.get(
            f"{stack.api_url}/voice/sessions/{session_id}",
            headers={"Authorization": f"Bearer {stack.api_key}"},
        )
        row = (
            dict(resp.json()) if resp.status_code == 200 else {"status": f"http {resp.status_code}"}
        )
        if row.get("status") in FINAL_STATUSES:
            break
        await asyncio.sleep(0.5)
    return row


async def _one_call(
    stack: BenchStack,
    http: httpx.AsyncClient,
    agent_id: str,
    utterance: Any,
    options: SoakOptions,
) -> dict[str, Any]:
    began = time.monotonic()
    result: dict[str, Any] = {"error": None, "v2v_ms": None}
    try:
        session = await stack.start_session(http, agent_id)
        result["session_id"] = session["session_id"]
        client = ProbeClient(session["livekit_url"], session["token"])
        await client.connect()
        joined = time.monotonic()
        try:
            greeted = await client.wait_answer(joined, within=120)
            if greeted is None:
                raise TimeoutError("no greeting within 120 s")
            await client.wait_quiet(options.quiet, within=60)
            text, pcm = utterance
            turn = await client.turn(0, text, pcm, tone=False, quiet=options.quiet, within=30)
            result["v2v_ms"] = turn.v2v_ms
            if turn.v2v_ms is None:
                raise TimeoutError("no answer within 30 s")
        finally:
            await client.aclose()
        row = await _final(http, stack, session["session_id"])
        result["status"], result["end_reason"] = row.get("status"), row.get("end_reason")
        if (row.get("status"), row.get("end_reason")) != (
            SessionStatus.ENDED,
            EndReason.USER_LEFT,
        ):
            result["error"] = f"session stored as {row.get('status')}/{row.get('end_reason')}"
    except Exception as exc:  # noqa: BLE001 - one failed call is a result, not the end
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["duration_s"] = round(time.monotonic() - began, 2)
    return result


async def _rooms_left(stack: BenchStack, names: list[str]) -> list[str]:
    """The soak's rooms LiveKit still has, after up to 60 s (a room closes its departure
    timeout after the last participant leaves)."""
    async with lkapi.LiveKitAPI(stack.livekit_url, stack.lk_key, stack.lk_secret) as lk:
        left: list[str] = []
        for _ in range(60):
            rooms = await lk.room.list_rooms(lkapi.ListRoomsRequest(names=names))
            left = [r.name for r in rooms.rooms]
            if not left:
                break
            await asyncio.sleep(1)
    return left


def _verdict(report: dict[str, Any]) -> list[str]:
    before, after = report["before"], report["after"]
    calls = max(1, report["calls"])
    grown = after["main_rss_mb"] - before["main_rss_mb"]
    problems = []
    if report["failed_calls"]:
        problems.append(f"{report['failed_calls']} calls failed")
    if report["rooms_left"]:
        problems.append(f"{len(report['rooms_left'])} rooms left open")
    if after["processes"] != before["processes"]:
        problems.append(f"worker processes {before['processes']} -> {after['processes']}")
    if after["worker_fds"] > before["worker_fds"] + MAX_FD_GROWTH:
        problems.append(f"worker file descriptors {before['worker_fds']} -> {after['worker_fds']}")
    if grown > MAX_MAIN_RSS_GROWTH_MB or grown / calls > MAX_RSS_GROWTH_PER_CALL_MB:
        problems.append(f"worker RSS grew {grown:+.1f} MB ({grown / calls:+.2f} MB/call)")
    return problems


async def run_soak_bench(
    options: SoakOptions, settings: Settings, *, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Run the soak; returns the JSON that ``--out`` writes (``pass`` and ``problems``)."""
    started = time.time()
    audio = await _audio(8, settings)
    workdir = options.workdir or settings.data_dir / "bench" / f"soak-{int(started)}"
    progress(f"starting LiveKit, API and worker in {workdir}")
    stack_opts = StackOptions(workdir=workdir, worker_max_jobs=4, worker_idle_processes=2)
    with BenchStack(stack_opts, settings) as stack:
        worker_pid = stack.children["worker"].pid
        agent_id = stack.create_agent(
            providers=STACKS[options.stack], greeting=GREETING, instructions=INSTRUCTIONS
        )
        async with httpx.AsyncClient(timeout=60) as http:
            progress("warm-up call")
            warm = await _one_call(stack, http, agent_id, audio[0], options)
            if warm["error"]:
                raise RuntimeError(f"the warm-up call failed: {warm['error']}")
            before = await _settled(worker_pid, _snapshot(worker_pid)["processes"], within=60)
            results: list[dict[str, Any]] = []
            end = time.monotonic() + options.seconds
            while time.monotonic() < end and len(results) < options.max_calls:
                utterance = audio[len(results) % len(audio)]
                results.append(await _one_call(stack, http, agent_id, utterance, options))
                if len(results) % 10 == 0:
                    progress(f"  {len(results)} calls, {_snapshot(worker_pid)['main_rss_mb']} MB")
            after = await _settled(worker_pid, before["processes"])
        rooms = await _rooms_left(stack, [r["session_id"] for r in results if "session_id" in r])
    v2v = [r["v2v_ms"] for r in results if r["v2v_ms"] is not None]
    tenth = max(1, len(v2v) // 10)
    report: dict[str, Any] = {
        "bench": "soak",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "options": {**dataclasses.asdict(options), "workdir": str(workdir)},
        "calls": len(results),
        "failed_calls": sum(1 for r in results if r["error"]),
        "errors": sorted({r["error"] for r in results if r["error"]})[:20],
        "call_s": {
            "p50": percentile([r["duration_s"] for r in results], 50),
            "p95": percentile([r["duration_s"] for r in results], 95),
        },
        "v2v_ms": {
            "p50": percentile(v2v, 50),
            "p95": percentile(v2v, 95),
            "first_tenth_p50": percentile(v2v[:tenth], 50),
            "last_tenth_p50": percentile(v2v[-tenth:], 50),
        },
        "before": before,
        "after": after,
        "rooms_left": rooms,
        "bounds": {
            "main_rss_growth_mb": MAX_MAIN_RSS_GROWTH_MB,
            "rss_growth_per_call_mb": MAX_RSS_GROWTH_PER_CALL_MB,
            "fd_growth": MAX_FD_GROWTH,
        },
    }
    report["problems"] = _verdict(report)
    report["pass"] = not report["problems"]
    return report
