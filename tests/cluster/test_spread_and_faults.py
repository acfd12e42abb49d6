"""Scale-out on LiveKit's distributed mode, in namespaces: two LiveKit nodes sharing Redis,
two API hosts, two worker hosts, the shared models and PostgreSQL (tests/cluster/conftest.py).

Calls started through either API host land on both nodes and both worker hosts, each with a
real spoken exchange; a worker host that loses power ends its call with the reason, keeps every
stored turn, and the next calls go to the other host."""

from __future__ import annotations

import asyncio
import contextlib
import re
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
from thinnest.cluster.haproxy import runtime_command
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
    # Each worker host's Prometheus scrape counts the calls it took.
    for n in (1, 2):
        took = sum(1 for _sid, _node, host in placed if host == f"w{n}")
        text = (await asyncio.to_thread(httpx.get, cluster.worker_metrics_url(n))).text
        started = re.search(r"^thinnest_calls_started_total(?:\{[^}]*\})? (\S+)$", text, re.M)
        assert started and float(started.group(1)) >= took, text[-2000:]


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


def _registered_on(cluster: Cluster) -> dict[str, set[str]]:
    """Which worker hosts hold a connection to each LiveKit node through the load balancer
    (haproxy's sessions, by source address): with no call up, only their ``/agent``
    registrations."""
    by_address = {role.host.address: name for name, role in cluster.roles.items()}
    placed: dict[str, set[str]] = {}
    for line in runtime_command(cluster.lb_socket, "show sess").splitlines():
        src = re.search(r"src=([\d.]+):", line)
        srv = re.search(r"be=livekit srv=(\S+)", line)
        if src and srv and by_address.get(src.group(1), "").startswith("w"):
            placed.setdefault(srv.group(1), set()).add(by_address[src.group(1)])
    return placed


async def test_a_livekit_node_taken_out_drains_and_new_calls_go_to_the_other(
    cluster: Cluster, database: Database, speak: Callable[[str], Path]
) -> None:
    """The node procedure of docs/deploy.md: the load balancer sends the node nothing new,
    then SIGTERM. Its calls and the other node's go on; new calls get an agent, on the other
    node, even when the worker LiveKit offers them to is registered on the draining node;
    the node exits once its calls hung up, and its workers register again elsewhere."""
    await _until(lambda: _free_slots(cluster, database) == 4, 60, "the earlier calls' end")
    registered = await _until(lambda: _registered_on(cluster), 10, "the workers' registrations")
    # The node that holds the most worker registrations: the hard case.
    out = max(sorted(registered), key=lambda node: len(registered[node]))
    stays = "lk1" if out == "lk2" else "lk2"
    async with contextlib.AsyncExitStack() as calls:
        on: dict[str, VoiceClient] = {}
        for _ in range(3):  # a call on each node (room placement is LiveKit's)
            started = await _start_when_ready(cluster, 1, within=30)
            client = await calls.enter_async_context(
                VoiceClient(started["livekit_url"], started["token"])
            )
            await greeted(client)
            on.setdefault(_node_of(cluster, started["session_id"]), client)
            if len(on) == 2:
                break
            await asyncio.sleep(3.0)  # LiveKit's view of the nodes' rooms catches up
        assert set(on) == {"lk1", "lk2"}, f"rooms only on {set(on)}"
        await asyncio.to_thread(cluster.drain_node, out)
        for node in ("lk1", "lk2"):
            user, _reply = await ask(on[node], speak)
            assert heard(user["text"]), (node, user["text"])
        # New calls while it drains: each gets its agent, in a room on the other node.
        taken_by = []
        for api in (1, 2, 1):
            started = await _start_when_ready(cluster, api, within=30)
            async with VoiceClient(started["livekit_url"], started["token"]) as client:
                await greeted(client)
                taken_by.append(
                    await _until(
                        lambda s=started["session_id"]: _worker_host_of(cluster, database, s),
                        10,
                        "a heartbeat",
                    )
                )
            assert _node_of(cluster, started["session_id"]) == stays
        # (Which case ran: a call taken by a worker registered on the draining node is the
        # one that failed before the load balancer.)
        print(f"registrations {registered}; {out} drained; new calls taken by {taken_by}")
        assert cluster.roles[out].process.poll() is None, f"{out} left before its call ended"
    # Its calls hung up: the node exits by itself, and its workers register on the other.
    await asyncio.to_thread(cluster.roles[out].process.wait, 90)
    await _until(
        lambda: {w for ws in _registered_on(cluster).values() for w in ws} == {"w1", "w2"},
        30,
        "the workers' new registrations",
    )
    started = await _start_when_ready(cluster, 2, within=30)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await greeted(client)
    await asyncio.to_thread(cluster.restart_role, out)
    await asyncio.to_thread(cluster.set_lb_state, out, "ready")


async def test_an_api_host_killed_under_load_leaves_the_other_serving(
    cluster: Cluster, database: Database
) -> None:
    """SIGKILL an API host while a bounded load reads through the other host and through the
    load balancer: the other host answers every request, the load balancer fails at most the
    requests the dead host held; a call started through the dead host is read and ended
    through the other."""
    await _until(lambda: _free_slots(cluster, database) == 4, 60, "the earlier calls' end")
    assert cluster.identity is not None
    headers = {"Authorization": f"Bearer {cluster.identity.api_key}"}
    started = await asyncio.to_thread(_start, cluster, 1)
    sid = started["session_id"]
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await greeted(client)
        answers: dict[str, list[int | str]] = {"direct": [], "lb": []}
        stop = asyncio.Event()

        async def load(base: str, into: list[int | str]) -> None:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
                for _ in range(300):  # bounded: 300 requests or the stop, whichever first
                    if stop.is_set():
                        return
                    try:
                        resp = await http.get(f"/voice/sessions/{sid}")
                        into.append(resp.status_code)
                    except httpx.HTTPError as exc:
                        into.append(type(exc).__name__)

        loads = [
            asyncio.create_task(load(cluster.api_url(2), answers["direct"])),
            asyncio.create_task(load(cluster.lb_api_url, answers["lb"])),
            asyncio.create_task(load(cluster.lb_api_url, answers["lb"])),
        ]
        await asyncio.sleep(2.0)
        before = len(answers["lb"])
        await asyncio.to_thread(cluster.kill_host, "api1")
        await asyncio.sleep(6.0)  # the load balancer's checks take the dead host out (2 s)
        stop.set()
        await asyncio.gather(*loads)
        lb = answers["lb"]
        assert answers["direct"] and set(answers["direct"]) == {200}, answers["direct"]
        assert before > 10 and set(lb[:before]) == {200}, lb[:before]
        failed = [a for a in lb if a != 200]
        assert len(failed) <= 2, failed  # at most what the dead host held (2 in flight)
        assert len(lb) > before + 20 and lb[-20:] == [200] * 20, lb[before:]
        # Started through api1, read and ended through api2.
        ended = await asyncio.to_thread(
            httpx.post, f"{cluster.api_url(2)}/voice/sessions/{sid}/end", headers=headers
        )
        assert ended.status_code == 200, ended.text
        await client.next_event(30, type="call_ended")
    row = await _until(lambda: _final(database, sid), 30, "the session's end")
    assert (row.status, row.end_reason) == ("ended", "ended_by_api")
    await asyncio.to_thread(cluster.restart_role, "api1")


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
