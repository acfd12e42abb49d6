"""A bounded soak: short calls one after another against a worker and an API of the test's
own, then checks that nothing leaked: the worker's processes, its file descriptors and this
process's (the API runs here), LiveKit rooms, and the worker's memory (RSS, the main process
and the whole tree) within stated bounds; every session finalised.

One minute by default; ``THINNEST_SOAK_SECONDS=600`` runs the ten-minute version.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import psutil
import pytest

from livekit import api as lkapi
from tests.conftest import Tenant, make_settings, start_api
from tests.engine.conftest import start_worker, stop_worker, wait_final
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

#: Read at import: the test environment drops THINNEST_* variables while tests run.
SOAK_SECONDS = float(os.environ.get("THINNEST_SOAK_SECONDS", "60"))
#: The worker's start (models loaded) and the checks come on top of the soak itself.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(SOAK_SECONDS + 600)]
#: Bounds: growth of the worker's main process RSS over the whole soak, and per call.
MAX_MAIN_RSS_GROWTH_MB = 64.0
MAX_RSS_GROWTH_PER_CALL_MB = 4.0
#: File descriptors may differ by a few (pools, timers), not by one per call.
MAX_FD_GROWTH = 16


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _snapshot(pid: int) -> dict[str, float]:
    tree = _tree(pid)
    main = tree[0]
    return {
        "processes": len(tree),
        "main_rss_mb": main.memory_info().rss / 2**20,
        "tree_rss_mb": sum(p.memory_info().rss for p in tree) / 2**20,
        "worker_fds": main.num_fds(),
        "own_fds": psutil.Process().num_fds(),
    }


async def _settled(pid: int, most_processes: float, within: float = 60) -> dict[str, float]:
    """The worker at rest: no more processes than ``most_processes``, and its process count
    the same over 3 s (a job process that is still exiting, or an idle one being respawned,
    is not counted as the worker's size at rest)."""
    deadline = time.monotonic() + within
    counts = [_snapshot(pid)["processes"]]
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        counts.append(_snapshot(pid)["processes"])
        last = counts[-4:]
        if len(last) == 4 and len(set(last)) == 1 and last[0] <= most_processes:
            break
    return _snapshot(pid)


async def test_repeated_short_calls_leak_nothing(
    livekit_server: LiveKitDevServer,
    database: Database,
    database_url: str,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    name = "thinnest-soak"
    worker = start_worker(
        livekit_server, database_url, tmp_path / "worker", env={"THINNEST_AGENT_NAME": name}
    )
    api = start_api(
        make_settings(
            tmp_path,
            livekit_server,
            agent_name=name,
            require_worker=True,
            rate_limit_per_minute=10_000,
        ),
        database,
    )
    agent = tenant.create_agent(greeting="Hi.", max_duration=60)
    http = api.client(tenant.key)
    sessions: list[str] = []

    async def one_call() -> float:
        began = time.monotonic()
        resp = await asyncio.to_thread(http.post, "/voice/start", json={"agent_id": agent["id"]})
        assert resp.status_code == 200, resp.text
        started = resp.json()
        sessions.append(started["session_id"])
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await client.next_event(90, type="transcript", role="agent")
        row = await wait_final(database, started["session_id"], within=60)
        assert (row.status, row.end_reason) == ("ended", "user_left")
        return time.monotonic() - began

    try:
        await one_call()  # warm-up: first-call allocations are not a leak
        before = await _settled(worker.process.pid, math.inf)
        durations: list[float] = []
        soak_end = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < soak_end:
            durations.append(await one_call())
        after = await _settled(worker.process.pid, before["processes"])

        # Every room closed (LiveKit's own list), every session final.
        lk = lkapi.LiveKitAPI(
            livekit_server.options.url,
            livekit_server.options.api_key,
            livekit_server.options.api_secret,
        )
        try:
            for _ in range(90):  # LiveKit closes a room its departure timeout (20 s) after
                rooms = await lk.room.list_rooms(lkapi.ListRoomsRequest(names=sessions))
                if not rooms.rooms:
                    break
                await asyncio.sleep(1)
        finally:
            await lk.aclose()
        calls = len(durations)
        grown = after["main_rss_mb"] - before["main_rss_mb"]
        print(
            f"\nsoak: {calls} calls in {SOAK_SECONDS:.0f} s (median "
            f"{sorted(durations)[calls // 2]:.1f} s); before {before}; after {after}; "
            f"main RSS {grown:+.1f} MB ({grown / calls:+.2f} MB/call); "
            f"rooms left {len(rooms.rooms)}"
        )
        assert calls >= 2, "the soak should fit several calls"
        assert [r.name for r in rooms.rooms] == []
        # A leak is growth; one fewer (an idle process being respawned) is not.
        assert after["processes"] <= before["processes"]
        assert after["worker_fds"] <= before["worker_fds"] + MAX_FD_GROWTH
        assert after["own_fds"] <= before["own_fds"] + MAX_FD_GROWTH
        assert grown <= MAX_MAIN_RSS_GROWTH_MB
        assert grown / calls <= MAX_RSS_GROWTH_PER_CALL_MB
        assert worker.process.poll() is None
    except BaseException:
        print(f"worker log (last lines):\n{worker.text()[-4000:]}")
        raise
    finally:
        http.close()
        api.stop()
        stop_worker(worker)
