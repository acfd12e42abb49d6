"""Faults with real components: the LiveKit server restarted under a running API, and the
database going away for a moment while a call's transcript is being written.

(A worker killed mid-call is in test_lifecycle.py, failing tools in test_tool_errors.py,
failing providers in test_provider_faults.py.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from livekit import rtc
from tests.conftest import _start_postgres, loopback_livekit, make_settings, start_api
from thinnest.contracts.agent import AgentConfig
from thinnest.engine.persistence import CallStore
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import agents, keys, sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _own_livekit(workdir: Path) -> LiveKitDevServer:
    """A LiveKit server of this test's own (the session's one is never stopped)."""
    return loopback_livekit(workdir)


def _wait_until(check, within: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s")
        time.sleep(0.3)


async def test_livekit_restart_is_reported_and_recovered_without_restarting_the_api(
    database: Database, tmp_path: Path
) -> None:
    livekit = _own_livekit(tmp_path / "livekit")
    livekit.start()
    api = start_api(make_settings(tmp_path, livekit, livekit_timeout=2.0), database)
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"faults-{os.getpid()}-{time.time_ns()}")
        _row, key = keys.create_key(db, owner)
        agent_id = agents.create_agent(db, owner.id, AgentConfig(name="faults")).id
    http = api.client(key)
    try:

        def start() -> httpx.Response:
            return http.post("/voice/start", json={"agent_id": agent_id})

        assert http.get("/readyz").status_code == 200
        assert start().status_code == 200

        await asyncio.to_thread(livekit.stop)
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["livekit"] != "ok"
        assert ready.json()["error"]["code"] == "not_ready"
        refused = start()
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "livekit_unavailable"
        page = http.get("/voice/sessions", params={"status": "failed"}).json()
        assert page["total"] == 1  # stored as failed, never left active

        await asyncio.to_thread(livekit.start)
        _wait_until(lambda: http.get("/readyz").status_code == 200, 60, "readyz recovering")
        again = start()
        assert again.status_code == 200, again.text
        body = again.json()
        room = rtc.Room()  # the new session is real: its token joins its room
        await asyncio.wait_for(room.connect(body["livekit_url"], body["token"]), 30)
        assert room.name == body["session_id"]
        await room.disconnect()
    finally:
        http.close()
        api.stop()
        livekit.stop()


# --- the database away for a moment -------------------------------------------------------------


class Postgres:
    """A PostgreSQL server of this test's own, stoppable and startable again."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="thinnest-pgfault-"))
        self.workdir.chmod(0o755)
        self.url, self._stop = _start_postgres(self.workdir)
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        self.bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1].parent
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "pgdata"), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.workdir / 'pgsock'} "
            "-c listen_addresses=127.0.0.1 -c fsync=off"
        )
        self.pg_ctl("-w", "-l", str(self.workdir / "pg.log"), "-o", options, "start")

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.close()


async def test_transcript_writes_survive_the_database_going_away(
    postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The engine's own store of a call (what the worker writes turns with) against a real
    PostgreSQL that is stopped mid-call and started again a moment later."""
    caplog.set_level(logging.WARNING, logger="thinnest")
    db = Database(postgres.url)
    db.migrate()
    with db.session() as s:
        owner = keys.get_or_create_owner(s, "o")
        agent = agents.create_agent(s, owner.id, AgentConfig(name="a"))
        sid = sessions.create_session(
            s, owner_id=owner.id, agent_id=agent.id, agent_config={}, context={}, max_duration=60
        ).id
    store = CallStore(db, sid)
    turn = {"interrupted": False, "started_at": None, "ended_at": None, "latency": {}}
    await store.add_turn(role="agent", text="before the outage", **turn)

    await asyncio.to_thread(postgres.stop)
    # As the engine does: each write is its own task, nobody waits for it.
    writes = [
        asyncio.create_task(store.add_turn(role=r, text=f"during the outage {i}", **turn))
        for i, r in enumerate(("user", "agent", "user"))
    ]
    writes.append(
        asyncio.create_task(
            store.add_tool_call(
                name="lookup", arguments={"q": 1}, result="{}", error=None, duration=0.1
            )
        )
    )
    await asyncio.sleep(1.5)
    assert not any(w.done() for w in writes), "writes should be waiting for the database"
    await asyncio.to_thread(postgres.start)
    await asyncio.wait_for(asyncio.gather(*writes), 30)
    await store.finalize(status="ended", reason="user_left")

    with db.session() as s:
        row = sessions.get_session(s, sid)
        turns = sorted((t.seq, t.text) for t in row.turns)
        status, tools = row.status, [c.name for c in row.tool_calls]
    # All there, each with its own seq, in the order they were spoken.
    assert turns == [(1, "before the outage")] + [
        (i + 2, f"during the outage {i}") for i in range(3)
    ]
    assert tools == ["lookup"]
    assert status == "ended"
    retried = [r for r in caplog.records if "failed (try" in r.getMessage()]
    assert retried, "the writes were retried"
    assert not [r for r in caplog.records if "could not store" in r.getMessage()]
    db.close()
    gc.collect()  # any connection the outage left open shows up here, in this test
