"""Scale-out on LiveKit's distributed mode, in namespaces: two LiveKit nodes sharing Redis,
two API hosts, two worker hosts, the shared models and PostgreSQL (tests/cluster/conftest.py).

Calls started through either API host land on both nodes and both worker hosts, each with a
real spoken exchange; a worker host that loses power ends its call with the reason, keeps every
stored turn, and the next calls go to the other host."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engine.conftest import heard
from tests.modelsvc.conftest import ask, greeted
from thinnest.client import VoiceClient
from thinnest.cluster.topology import Cluster
from thinnest.contracts.session import FINAL_STATUSES
from thinnest.store import sessions, workers
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _start(cluster: Cluster, api: int) -> dict[str, str]:
    assert cluster.identity is not None
    resp = httpx.post(
        f"{cluster.api_url(api)}/voice/start",
        json={"agent_id": cluster.identity.agent_id},
        headers={"Authorization": f"Bearer {cluster.identity.api_key}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _node_of(cluster: Cluster, session_id: str) -> str:
    """The LiveKit node (``lk1``…) that hosts the session's room (LiveKit's own record, in
    Redis)."""
    host, port = cluster.redis_address.split(":")
    out = subprocess.run(
        ["redis-cli", "-h", host, "-p", port, "hget", "room_node_map", session_id],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = {cluster.node_id(name): name for name in cluster.roles if name.startswith("lk")}
    return nodes.get(out.stdout.strip(), out.stdout.strip())


def _worker_host_of(cluster: Cluster, database: Database, session_id: str) -> str | None:
    """The worker host that holds the session, as its heartbeat says."""
    pids = {
        role.process.pid: name
        for name, role in cluster.roles.items()
        if name.startswith("w") and role.process is not None
    }
    with database.session() as db:
        for row in workers.live_workers(db, "thinnest", within=5.0):
            if session_id in row.session_ids:
                return pids.get(row.pid)
    return None


def _final(database: Database, session_id: str) -> Any:
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        return row if row.status in FINAL_STATUSES else None


async def _start_when_ready(cluster: Cluster, api: int, *, within: float) -> dict[str, str]:
    """A start through ``api``, retried while the cluster recovers (a 503 with its code)."""
    deadline = time.monotonic() + within
    assert cluster.identity is not None
    while True:
        resp = await asyncio.to_thread(
            httpx.post,
            f"{cluster.api_url(api)}/voice/start",
            json={"agent_id": cluster.identity.agent_id},
            headers={"Authorization": f"Bearer {cluster.identity.api_key}"},
            timeout=30,
        )
        if resp.status_code == 200:
            return dict(resp.json())
        assert resp.status_code == 503 and resp.json()["error"]["code"], resp.text
        assert time.monotonic() < deadline, resp.text
        await asyncio.sleep(1.0)


def _free_slots(cluster: Cluster, database: Database) -> int:
    with database.session() as db:
        return workers.free_slots(workers.live_workers(db, "thinnest", within=5.0), db)


async def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await asyncio.to_thread(check)
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Any:
    db = Database(cluster.database_url)
    yield db
    db.close()


async def test_calls_through_either_api_land_on_both_nodes_and_both_worker_hosts(
    cluster: Cluster, database: Database, speak: Callable[[str], Path]
) -> None:
    placed: list[tuple[str, str, str | None]] = []
    async with contextlib.AsyncExitStack() as calls:
        for n in range(4):
            started = await asyncio.to_thread(_start, cluster, 1 + n % 2)
            sid = started["session_id"]
            client = await calls.enter_async_context(
                VoiceClient(started["livekit_url"], started["token"])
            )
            await greeted(client)
            user, _reply = await ask(client, speak)
            assert heard(user["text"]), user["text"]
            host = await _until(
                lambda sid=sid: _worker_host_of(cluster, database, sid), 10, "a heartbeat"
            )
            placed.append((sid, _node_of(cluster, sid), host))
            # LiveKit's view of the nodes (2 s) and the workers' load (2.5 s) catch up.
            await asyncio.sleep(3.0)
    nodes = {node for _sid, node, _host in placed}
    hosts = {host for _sid, _node, host in placed}
    assert nodes == {"lk1", "lk2"}, placed
    assert hosts == {"w1", "w2"}, placed


async def test_a_draining_worker_host_finishes_its_call_and_takes_no_new_one(
    cluster: Cluster, database: Database, speak: Callable[[str], Path]
) -> None:
    await _until(lambda: _free_slots(cluster, database) == 4, 60, "the earlier calls' end")
    started = await asyncio.to_thread(_start, cluster, 1)
    sid = started["session_id"]
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await greeted(client)
        draining = await _until(lambda: _worker_host_of(cluster, database, sid), 10, "a heartbeat")
        other = "w2" if draining == "w1" else "w1"
        cluster.signal_role(draining, signal.SIGTERM)
        # A call started now goes to the other host: both of its calls fit there.
        for n in range(2):
            # (Retried while the first one's slot is still counted: it just hung up.)
            new = await _start_when_ready(cluster, 1 + n % 2, within=30)
            async with VoiceClient(new["livekit_url"], new["token"]) as second:
                await greeted(second)
                host = await _until(
                    lambda s=new["session_id"]: _worker_host_of(cluster, database, s),
                    10,
                    "a heartbeat",
                )
                assert host == other
        # The draining host's call goes on: it hears and answers.
        user, _reply = await ask(client, speak)
        assert heard(user["text"]), user["text"]
        assert cluster.roles[draining].process.poll() is None, "it left before its call ended"
    # Hung up: the call ends as the caller's, and the drained worker exits.
    row = await _until(lambda: _final(database, sid), 30, "the drained call's end")
    assert (row.status, row.end_reason) == ("ended", "user_left"), row.error
    proc = cluster.roles[draining].process
    await asyncio.to_thread(proc.wait, 60)
    await asyncio.to_thread(cluster.restart_role, draining)


async def test_a_redis_restart_is_survived_without_restarting_the_api(
    cluster: Cluster, database: Database, speak: Callable[[str], Path]
) -> None:
    await _until(lambda: _free_slots(cluster, database) == 4, 60, "the earlier calls' end")
    held = await asyncio.to_thread(_start, cluster, 1)
    async with VoiceClient(held["livekit_url"], held["token"]) as client:
        await greeted(client)
        # SIGTERM: Redis writes its append-only file and exits; then it starts on it again.
        await asyncio.to_thread(cluster.restart_role, "redis")
        # The held call goes on, and new calls start through both API hosts.
        user, _reply = await ask(client, speak)
        assert heard(user["text"]), user["text"]
        for api in (1, 2):
            started = await _start_when_ready(cluster, api, within=60)
            async with VoiceClient(started["livekit_url"], started["token"]) as other:
                await greeted(other)
        assert _final(database, held["session_id"]) is None, "the backstop ended a live call"


async def test_a_worker_host_that_dies_ends_its_call_and_the_next_go_to_the_other(
    cluster: Cluster, database: Database, speak: Callable[[str], Path]
) -> None:
    await _until(lambda: _free_slots(cluster, database) == 4, 60, "the earlier calls' end")
    started = await asyncio.to_thread(_start, cluster, 1)
    sid = started["session_id"]
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await greeted(client)
        await ask(client, speak)
        dead = await _until(lambda: _worker_host_of(cluster, database, sid), 10, "a heartbeat")

        def turns() -> list[tuple[str, str]]:
            with database.session() as db:
                return [(t.role, t.text) for t in sessions.get_session(db, sid).turns]

        # The greeting, the question and the answer (stored once the answer is spoken).
        stored = await _until(lambda: len(turns()) >= 3 and turns(), 30, "3 stored turns")
        await asyncio.to_thread(cluster.kill_host, dead)
        ended = await client.next_event(60, type="call_ended")
        assert ended["reason"] == "error", ended

    row = await _until(lambda: _final(database, sid), 30, "the session's end")
    assert (row.status, row.end_reason) == ("error", "error")
    assert [(t.role, t.text) for t in row.turns][: len(stored)] == stored
    alive = "w2" if dead == "w1" else "w1"
    for n in range(2):
        started = await asyncio.to_thread(_start, cluster, 1 + n % 2)
        next_sid = started["session_id"]
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await greeted(client)
            host = await _until(
                lambda sid=next_sid: _worker_host_of(cluster, database, sid),
                10,
                "a heartbeat",
            )
            assert host == alive
