"""Every ending carries its true reason, and a full worker is said so: with a real worker of a
pool of its own (two slots, a short no-show wait), a real API and LiveKit.

The other reasons are covered where their calls are held: ``ended_by_api``, ``user_left`` and
``error`` (a killed worker) in test_lifecycle.py, ``agent_ended`` in test_tools.py,
``max_duration`` in test_conversation.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from livekit import rtc
from tests.conftest import RunningApi, make_settings, start_api
from tests.engine.conftest import Worker, start_worker, stop_worker, wait_final
from thinnest.client import VoiceClient
from thinnest.config import DEV_CREDENTIALS_FILE
from thinnest.contracts import events as protocol
from thinnest.contracts.agent import AgentConfig
from thinnest.contracts.session import FINAL_STATUSES
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import agents, keys, sessions, workers
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

POOL = "thinnest-ends"
SLOTS = 2
NO_SHOW = 6.0
RETRY_AFTER = 3


@dataclass
class Pool:
    api: RunningApi
    worker: Worker
    key: str
    agent_id: str
    #: an agent whose STT (Whisper base) no job process has loaded: seconds between the
    #: engine's joining the room and its session's start
    slow_agent_id: str

    def http(self) -> httpx.Client:
        return self.api.client(self.key)


@pytest.fixture(scope="module")
def pool(
    livekit_server: LiveKitDevServer,
    api: RunningApi,  # the session's API receives LiveKit's webhooks: the backstop runs there
    database: Database,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pool]:
    """A worker of its own agent name with two slots and a 6 s no-show wait, and an API for
    it that refuses calls no worker can take; its demo routes use the pool's key."""
    workdir = tmp_path_factory.mktemp("ends")
    worker = start_worker(
        livekit_server,
        database_url,
        workdir / "worker",
        env={
            "THINNEST_AGENT_NAME": POOL,
            "THINNEST_WORKER_MAX_JOBS": str(SLOTS),
            "THINNEST_NO_SHOW_TIMEOUT": str(NO_SHOW),
            "THINNEST_WORKER_HEARTBEAT_INTERVAL": "1",
        },
    )
    # Its job processes ready (they load models: a minute and more on a loaded machine), so the
    # timings below are the engine's, not a process start's.
    deadline = time.monotonic() + 300
    while worker.text().count("process initialized") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"ends-{workdir.name}")
        _row, key = keys.create_key(db, owner, name="dev")
        config = AgentConfig(name="ends", greeting="Hello, this is a short greeting.")
        agent_id = agents.create_agent(db, owner.id, config).id
        slow = AgentConfig.model_validate(
            {
                "name": "slow",
                "greeting": "Hello.",
                "providers": {"stt": {"name": "whisper", "options": {"model": "base"}}},
            }
        )
        slow_agent_id = agents.create_agent(db, owner.id, slow).id
    (workdir / DEV_CREDENTIALS_FILE).write_text(json.dumps({"api_key": key}))
    settings = make_settings(
        workdir,
        livekit_server,
        agent_name=POOL,
        require_worker=True,
        worker_heartbeat_interval=1.0,
        no_show_timeout=NO_SHOW,
        no_capacity_retry_after=RETRY_AFTER,
        rate_limit_per_minute=1000,
        web_demo=True,
    )
    running = start_api(settings, database)
    try:
        yield Pool(running, worker, key, agent_id, slow_agent_id)
    finally:
        running.stop()
        stop_worker(worker)


def _start(pool: Pool, agent_id: str | None = None) -> httpx.Response:
    with pool.http() as http:
        return http.post("/voice/start", json={"agent_id": agent_id or pool.agent_id})


async def _started(pool: Pool, agent_id: str | None = None) -> dict[str, str]:
    resp = await asyncio.to_thread(_start, pool, agent_id)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _idle(database: Database, within: float = 240.0) -> None:
    """Until the pool's worker reports all its slots free (earlier calls have ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with database.session() as db:
            live = workers.live_workers(db, POOL, within=3.0)
            if live and workers.free_slots(live, db) >= SLOTS:
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the pool's slots are not all free after {within:.0f} s")


async def test_a_caller_who_never_joins_ends_as_no_show(pool: Pool, database: Database) -> None:
    started = await _started(pool)
    began = time.monotonic()
    # Well before LiveKit's empty_timeout (120 s), whose closing the room used to end the
    # session as an error (the backstop saw the engine leave).
    row = await wait_final(database, started["session_id"], within=NO_SHOW + 60)
    waited = time.monotonic() - began
    assert (row.status, row.end_reason) == ("ended", "no_show"), row.error
    assert waited > NO_SHOW - 1, f"ended after {waited:.1f} s, before the no-show wait"


async def test_a_caller_who_leaves_while_the_engine_starts_is_user_left(
    pool: Pool, database: Database
) -> None:
    await _idle(database)
    started = await _started(pool, pool.slow_agent_id)
    room = rtc.Room()
    agent_joined = asyncio.Event()

    def seen(participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            agent_joined.set()

    room.on("participant_connected", seen)
    await asyncio.wait_for(room.connect(started["livekit_url"], started["token"]), 20)
    for participant in room.remote_participants.values():
        seen(participant)
    await asyncio.wait_for(agent_joined.wait(), 60)
    # The engine is in the room, loading the agent's STT: its session has not started.
    await room.disconnect()
    row = await wait_final(database, started["session_id"], within=30)
    assert (row.status, row.end_reason) == ("ended", "user_left"), row.error
    assert not row.turns, "the agent spoke to nobody"


async def test_a_caller_who_leaves_before_the_engine_joins_is_user_left(
    api: RunningApi, livekit_server: LiveKitDevServer, database: Database, tmp_path: Path
) -> None:
    # No worker serves this API's agent name: the engine never comes. The caller joins and
    # hangs up; the session's API (LiveKit's webhooks) ends the session, not an error later.
    side = start_api(
        make_settings(tmp_path, livekit_server, agent_name="thinnest-nobody"), database
    )
    try:
        with database.session() as db:
            owner = keys.get_or_create_owner(db, f"early-{tmp_path.name}")
            _row, key = keys.create_key(db, owner)
            agent_id = agents.create_agent(db, owner.id, AgentConfig(name="early")).id
        with side.client(key) as http:
            resp = await asyncio.to_thread(http.post, "/voice/start", json={"agent_id": agent_id})
        assert resp.status_code == 200, resp.status_code
        started = resp.json()
        room = rtc.Room()
        await asyncio.wait_for(room.connect(started["livekit_url"], started["token"]), 20)
        await room.disconnect()
        row = await wait_final(database, started["session_id"], within=30)
        assert (row.status, row.end_reason) == ("ended", "user_left"), row.error
    finally:
        side.stop()


async def test_a_demo_hang_up_is_the_user_leaving(pool: Pool, database: Database) -> None:
    await _idle(database)
    origin = pool.api.url
    with httpx.Client(base_url=pool.api.url, headers={"Origin": origin}, timeout=30) as http:
        resp = await asyncio.to_thread(http.post, "/demo/session", json={"agent_id": pool.agent_id})
        assert resp.status_code == 200, resp.text
        started = resp.json()
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await client.next_event(90, type="transcript", role="agent")
            hung_up = await asyncio.to_thread(
                http.post, f"/demo/session/{started['session_id']}/end", json={}
            )
            assert hung_up.status_code == 200, hung_up.text
            assert hung_up.json()["end_reason"] == "user_left"
            ended = await client.next_event(15, type="call_ended")
            assert ended["reason"] == "user_left"
    row = await wait_final(database, started["session_id"])
    assert (row.status, row.end_reason) == ("ended", "user_left")


async def test_a_full_worker_answers_503_no_capacity_until_a_slot_frees(
    pool: Pool, database: Database
) -> None:
    await _idle(database)
    # Nobody joins these: they hold the worker's slots until the no-show wait ends them.
    held = [await _started(pool) for _ in range(SLOTS)]
    refused = await asyncio.to_thread(_start, pool)
    assert refused.status_code == 503, refused.status_code
    assert refused.json()["error"]["code"] == "no_capacity"
    assert refused.headers["Retry-After"] == str(RETRY_AFTER)
    # Still refused once the worker has taken both calls and reported them.
    await asyncio.sleep(2.0)
    assert (await asyncio.to_thread(_start, pool)).status_code == 503
    # A held call ends NO_SHOW seconds after its job runs; a job may first wait for a job
    # process (a new one loads its models: a minute and more on a loaded 2-core machine).
    deadline = time.monotonic() + NO_SHOW + 180
    while True:
        resp = await asyncio.to_thread(_start, pool)
        if resp.status_code == 200 or time.monotonic() > deadline:
            break
        assert resp.json()["error"]["code"] == "no_capacity"
        await asyncio.sleep(1.0)
    assert resp.status_code == 200, f"no slot came free after the no-show wait: {resp.text}"
    # The slot came free because a held session ended as a no-show (the other may still wait
    # for a job process); both end so.
    with database.session() as db:
        statuses = [sessions.get_session(db, h["session_id"]).status for h in held]
    assert any(s in FINAL_STATUSES for s in statuses), statuses
    for started in held:
        row = await wait_final(database, started["session_id"], within=NO_SHOW + 180)
        assert row.end_reason == "no_show"
    with pool.http() as http:
        ended = await asyncio.to_thread(
            http.post, f"/voice/sessions/{resp.json()['session_id']}/end"
        )
    assert ended.status_code == 200


def test_end_control_reasons() -> None:
    assert protocol.end_reason(b'{"type":"end","reason":"user_left"}') == "user_left"
    assert protocol.end_reason(b'{"type":"end","reason":"ended_by_api"}') == "ended_by_api"
    for other in (b'{"type":"end","reason":"error"}', b"[1]", b"\xff", b"{}"):
        assert protocol.end_reason(other) == "ended_by_api"
