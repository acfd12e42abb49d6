"""``thinnest bench concurrency``: how many calls at once stay healthy on this machine.

For each stack (``offline``, ``fixed``: :data:`thinnest.bench.latency.STACKS`) the bench
ramps the number of simultaneous calls 1, 2, 4, 8, … up to ``max_calls``. At each level it
starts that many calls through ``/voice/start`` at once; each caller
(:class:`~thinnest.bench.probe.ProbeClient`) waits for the greeting, then all say
``turns`` utterances, each after the previous answer, timing every answer. A level is
**healthy** when every turn is answered, the p95 voice-to-voice latency is at most
``p95_factor`` × that of one call (and at most ``p95_limit_ms``), and at most 1 % of the
answers' frames arrive late (> 60 ms after the previous one) or, for the ``fixed`` stack's
continuous tone, near-silent (lost audio). The ramp stops at the first unhealthy level, or
before a level that would leave less than ``min_free_mb`` of memory.

CPU and memory per call come from psutil over the voice engine's process tree (the worker,
its job processes) and, with ``models`` (the default), the shared model services' tree: CPU
seconds used while the callers speak / wall time / calls, and the memory each call adds:
the trees' proportional set size (PSS) while the calls are connected, less their PSS at rest
before the level, / calls. The job processes' median PSS and the services' PSS are reported
beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from thinnest.bench.latency import GREETING, INSTRUCTIONS, STACKS, _audio, machine
from thinnest.bench.metrics import percentile
from thinnest.bench.probe import ProbeClient, TurnResult
from thinnest.bench.stack import BenchStack, StackOptions
from thinnest.config import Settings

__all__ = ["ConcurrencyOptions", "run_concurrency_bench"]


@dataclass(frozen=True)
class ConcurrencyOptions:
    """What to run.

    Attributes:
        stacks: provider sets to ramp.
        max_calls: the highest level tried (levels double from 1).
        levels: the levels to run instead, in this order (a smoke test: ``(6,)``).
        models: start the shared model services (as ``thinnest dev`` does); off, each job
            process loads the default agent's models itself.
        turns: utterances per call at each level.
        p95_factor: a level is unhealthy past this × the one-call p95.
        p95_limit_ms: … or past this absolute p95.
        bad_frames: … or past this share of late / lost answer frames.
        min_free_mb: do not start a level that would leave less memory than this.
        quiet: seconds of agent silence that end an answer.
        workdir: where the stack keeps its files.
    """

    stacks: tuple[str, ...] = ("offline", "fixed")
    max_calls: int = 32
    turns: int = 3
    p95_factor: float = 1.5
    p95_limit_ms: float = 4000.0
    bad_frames: float = 0.01
    min_free_mb: float = 3000.0
    quiet: float = 1.5
    levels: tuple[int, ...] = ()
    models: bool = True
    workdir: Path | None = None


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) of each process still alive, by pid."""
    used: dict[int, float] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots by the processes present in both (one that
    exited in between takes its time with it)."""
    return sum(max(0.0, after[pid] - used) for pid, used in before.items() if pid in after)


def _pss_mb(pid: int) -> list[float]:
    """Proportional set size of each process of the tree, MB."""
    sizes = []
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            sizes.append(getattr(info, "pss", info.uss) / 1e6)
    return sizes


async def _settle(pid: int, *, calls: int, within: float) -> None:
    """Until the worker tree uses less than one core (replacement job processes prewarm
    after calls take the idle ones) or ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = _cpu_seconds(_tree(pid))
        await asyncio.sleep(1.0)
        if _cpu_delta(before, _cpu_seconds(_tree(pid))) < 0.5 + 0.1 * calls:
            return


def _story(stack: BenchStack, session: dict[str, Any]) -> list[str]:
    """The worker's log lines about a call (its room), and its warnings and errors: why an
    agent never greeted."""
    room = str(session.get("session_id", "?"))
    lines = stack.log_text("worker").splitlines()
    return [
        line[-400:]
        for line in lines
        if room in line or "timed out" in line or "ERROR" in line or "WARNING" in line
    ][-20:]


async def _one_call(
    stack: BenchStack,
    http: httpx.AsyncClient,
    agent_id: str,
    audio: list[tuple[int, str, np.ndarray]],
    *,
    tone: bool,
    ready: asyncio.Barrier,
    go: asyncio.Event,
    options: ConcurrencyOptions,
    starts: list[dict[str, float | None]],
) -> list[TurnResult]:
    try:
        session = await stack.start_session(http, agent_id)
        client = ProbeClient(session["livekit_url"], session["token"])
        await client.connect()
    except BaseException:
        await ready.abort()
        raise
    try:
        joined = time.monotonic()
        greeted = await client.wait_answer(joined, within=240)
        starts.append(
            {
                "join_ms": client.join_ms(),
                "greeting_ms": None if greeted is None else 1000 * (greeted - joined),
            }
        )
        if greeted is not None:
            await client.wait_quiet(options.quiet, within=60)
        await ready.wait()
        await go.wait()
        if greeted is None:
            raise TimeoutError(
                f"no greeting within 240 s; the worker's log of it: {_story(stack, session)}"
            )
        return [
            await client.turn(i, text, pcm, tone=tone, quiet=options.quiet, within=30)
            for i, text, pcm in audio
        ]
    finally:
        await client.aclose()


async def _level(
    stack: BenchStack,
    agent_id: str,
    stack_name: str,
    calls: int,
    audio: list[tuple[str, np.ndarray]],
    options: ConcurrencyOptions,
    worker_pid: int,
) -> dict[str, Any]:
    services = stack.children["models"].pid if "models" in stack.children else None
    roots = [worker_pid, *([services] if services else [])]
    at_rest = sum(size for pid in roots for size in _pss_mb(pid))
    ready = asyncio.Barrier(calls + 1)
    go = asyncio.Event()
    tone = stack_name == "fixed"
    starts: list[dict[str, float | None]] = []  # each call's agent join and greeting
    async with httpx.AsyncClient(timeout=60) as http:
        tasks = []
        for c in range(calls):
            mine = [(i, *audio[(c * options.turns + i) % len(audio)]) for i in range(options.turns)]
            tasks.append(
                asyncio.create_task(
                    _one_call(
                        stack,
                        http,
                        agent_id,
                        mine,
                        tone=tone,
                        ready=ready,
                        go=go,
                        options=options,
                        starts=starts,
                    )
                )
            )
        error = ""
        try:
            await asyncio.wait_for(ready.wait(), 400)
        except (TimeoutError, asyncio.BrokenBarrierError) as exc:
            error = f"calls did not all start: {exc!r}"
        await _settle(worker_pid, calls=calls, within=90)
        # Each call is a job process of its own, prewarmed (the big ones of the tree).
        jobs = [size for size in _pss_mb(worker_pid)[1:] if size > 40]
        connected = sum(size for pid in roots for size in _pss_mb(pid))
        procs = [p for pid in roots for p in _tree(pid)]
        cpu0, t0 = _cpu_seconds(procs), time.monotonic()
        go.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cpu = _cpu_delta(cpu0, _cpu_seconds(procs)) / (time.monotonic() - t0)
    turns = [t for r in results if isinstance(r, list) for t in r]
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    answered = [t for t in turns if t.v2v_ms is not None]
    v2v = [t.v2v_ms for t in turns if t.v2v_ms is not None]
    frames = sum(t.frames for t in answered) or 1
    return {
        "stack": stack_name,
        "calls": calls,
        "turns": calls * options.turns,
        "answered": len(answered),
        "v2v_ms": {
            "p50": percentile(v2v, 50),
            "p95": percentile(v2v, 95),
            "max": max(v2v) if v2v else float("nan"),
        },
        "join_ms": _spread([s["join_ms"] for s in starts]),
        "greeting_ms": _spread([s["greeting_ms"] for s in starts]),
        "late_ratio": sum(t.late_frames for t in answered) / frames,
        "quiet_ratio": sum(t.quiet_frames for t in answered) / frames,
        "cpu_percent_per_call": 100 * cpu / calls,
        "cpu_percent_total": 100 * cpu,
        "memory_mb_per_call": max(0.0, connected - at_rest) / calls,
        "memory_mb_job_process": percentile(jobs, 50),
        "memory_mb_worker_tree": sum(_pss_mb(worker_pid)),
        "memory_mb_services": sum(_pss_mb(services)) if services else 0.0,
        "errors": ([error] if error else []) + failures,
    }


def _spread(values: list[float | None]) -> dict[str, float]:
    """p50 and max of the calls' figures that were measured (NaN when none was)."""
    known = [v for v in values if v is not None]
    return {
        "p50": percentile(known, 50),
        "max": max(known) if known else float("nan"),
        "n": len(known),
    }


def _judge(level: dict[str, Any], first: dict[str, Any] | None, options: ConcurrencyOptions) -> str:
    """Why a level is unhealthy ('' when healthy)."""
    if level["answered"] < level["turns"]:
        return f"{level['turns'] - level['answered']} turns unanswered"
    p95 = level["v2v_ms"]["p95"]
    if p95 > options.p95_limit_ms:
        return f"p95 {p95:.0f} ms > {options.p95_limit_ms:.0f} ms"
    if first is not None and p95 > options.p95_factor * first["v2v_ms"]["p95"]:
        return f"p95 {p95:.0f} ms > {options.p95_factor}× one call's"
    if level["late_ratio"] > options.bad_frames:
        return f"{100 * level['late_ratio']:.1f} % late frames"
    if level["quiet_ratio"] > options.bad_frames:
        return f"{100 * level['quiet_ratio']:.1f} % lost frames"
    return ""


async def run_concurrency_bench(
    options: ConcurrencyOptions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Ramp each stack; returns every level and the highest healthy one."""
    started = time.time()
    audio = await _audio(16, settings)
    workdir = options.workdir or settings.data_dir / "bench" / f"concurrency-{int(started)}"
    stack_opts = StackOptions(
        workdir=workdir,
        worker_max_jobs=options.max_calls + 2,
        worker_idle_processes=2,
        # As `thinnest dev` runs: with the services, a job process loads no model (without
        # them it holds the default agent's, whatever its call uses).
        models=options.models,
    )
    levels: list[dict[str, Any]] = []
    best: dict[str, int] = {}
    progress(f"starting LiveKit, API and worker in {workdir}")
    with BenchStack(stack_opts, settings) as stack:
        worker_pid = stack.children["worker"].pid
        for stack_name in options.stacks:
            agent_id = stack.create_agent(
                providers=STACKS[stack_name], greeting=GREETING, instructions=INSTRUCTIONS
            )
            best[stack_name] = 0
            first: dict[str, Any] | None = None
            for calls in options.levels or _doubling(options.max_calls):
                sizes = [lv["memory_mb_per_call"] for lv in levels]
                per_call = max((m for m in sizes if m == m), default=800.0)  # NaN != NaN
                free = psutil.virtual_memory().available / 1e6
                if free - calls * max(per_call, 300.0) < options.min_free_mb:
                    progress(f"{stack_name}: {calls} calls would leave < {options.min_free_mb} MB")
                    levels.append(_skipped(stack_name, calls, "not enough memory"))
                    break
                progress(f"{stack_name}: {calls} concurrent calls")
                level = await _level(stack, agent_id, stack_name, calls, audio, options, worker_pid)
                level["why"] = _judge(level, first, options)
                level["healthy"] = not level["why"]
                levels.append(level)
                progress(
                    f"  p95 {level['v2v_ms']['p95']:.0f} ms, healthy: {level['healthy']} "
                    f"{level['why']}"
                )
                if not level["healthy"]:
                    break
                first = first or level
                best[stack_name] = max(best[stack_name], calls)
                await asyncio.sleep(3)  # the calls' rooms close
    return {
        "bench": "concurrency",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "options": {**dataclasses.asdict(options), "workdir": str(workdir)},
        "levels": levels,
        "max_healthy": best,
    }


def _doubling(most: int) -> list[int]:
    """1, 2, 4, … up to ``most``."""
    return [2**i for i in range(most.bit_length()) if 2**i <= most]


def _skipped(stack: str, calls: int, why: str) -> dict[str, Any]:
    nan = float("nan")
    return {
        "stack": stack,
        "calls": calls,
        "turns": 0,
        "answered": 0,
        "v2v_ms": {"p50": nan, "p95": nan, "max": nan},
        "join_ms": _spread([]),
        "greeting_ms": _spread([]),
        "late_ratio": 0.0,
        "quiet_ratio": 0.0,
        "cpu_percent_per_call": nan,
        "cpu_percent_total": nan,
        "memory_mb_per_call": nan,
        "memory_mb_job_process": nan,
        "memory_mb_services": nan,
        "errors": [],
        "healthy": False,
        "why": why,
    }
