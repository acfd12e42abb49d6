"""Worker heartbeats and the free slots the API counts from them (SQLite or PostgreSQL)."""

from __future__ import annotations

import secrets

import pytest

from thinnest.contracts.agent import AgentConfig
from thinnest.store import agents, keys, sessions, workers
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def test_free_slots_are_counted_per_worker_less_the_calls_no_worker_holds_yet(
    database: Database,
) -> None:
    pool = f"pool-{secrets.token_hex(3)}"
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"{pool}-owner")
        agent = agents.create_agent(db, owner.id, AgentConfig(name="a"))
        started = [
            sessions.create_session(
                db,
                owner_id=owner.id,
                agent_id=agent.id,
                agent_config={},
                context={},
                max_duration=60,
            ).id
            for _ in range(3)
        ]
    taken, waiting = started[:1], started[1:]
    with database.session() as db:
        before = workers.free_slots([], db)
        workers.heartbeat(db, f"{pool}-a", agent_name=pool, max_jobs=4, active_jobs=3)
        # A worker holding the first session (reported), one free slot.
        workers.heartbeat(
            db, f"{pool}-b", agent_name=pool, max_jobs=2, active_jobs=1, session_ids=taken
        )
        # Over its own count (it took calls before reporting): frees nothing for the others.
        workers.heartbeat(db, f"{pool}-c", agent_name=pool, max_jobs=2, active_jobs=3)
    # (Other tests' young sessions in the shared database count too: compare differences.)
    with database.session() as db:
        live = workers.live_workers(db, pool, within=10)
        assert len(live) == 3
        held = workers.free_slots(live, db)
        # 1 + 1 + 0 free slots, less the two sessions dispatched but held by no worker yet.
        assert held <= 0
        workers.heartbeat(db, f"{pool}-b", active_jobs=1, session_ids=[])
    with database.session() as db:
        unheld = workers.free_slots(workers.live_workers(db, pool, within=10), db)
        assert held - unheld == 1  # the taken session counted once, not twice
        workers.heartbeat(db, f"{pool}-b", active_jobs=1, session_ids=taken)
        for row in waiting:
            sessions.finalize(
                db, sessions.get_session(db, row), status="ended", reason="ended_by_api"
            )
    with database.session() as db:
        live = workers.live_workers(db, pool, within=10)
        assert workers.free_slots(live, db) - held == 2
        assert before == 0
        for w in live:
            workers.forget(db, w.id)
        for row in taken:
            sessions.finalize(
                db, sessions.get_session(db, row), status="ended", reason="ended_by_api"
            )
