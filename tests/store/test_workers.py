"""Worker heartbeats and the free slots the API counts from them (SQLite or PostgreSQL)."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import pytest

from thinnest.store import agents, keys, sessions, workers
from thinnest.store.db import Database
from thinnest.store.models import utcnow

pytestmark = pytest.mark.integration


def test_free_slots_are_counted_per_worker_less_the_calls_no_worker_reported_yet(
    database: Database,
) -> None:
    pool = f"pool-{secrets.token_hex(3)}"
    with database.session() as db:
        workers.heartbeat(db, f"{pool}-a", agent_name=pool, max_jobs=4, active_jobs=4)
        workers.heartbeat(db, f"{pool}-b", agent_name=pool, max_jobs=4, active_jobs=1)
        # A worker over its own count (it took a call before reporting) frees nothing for others.
        workers.heartbeat(db, f"{pool}-c", agent_name=pool, max_jobs=2, active_jobs=3)
    with database.session() as db:
        live = workers.live_workers(db, pool, within=10)
        assert len(live) == 3
        before = workers.free_slots(live, db)
    # Sessions started after the workers' last reports: dispatched, not counted by any yet.
    time.sleep(0.01)
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"{pool}-owner")
        agent = agents.create_agent(db, owner.id, {"name": "a"})
        started = [
            sessions.create_session(
                db,
                owner_id=owner.id,
                agent_id=agent.id,
                agent_config={},
                context={},
                max_duration=60,
                created_at=utcnow() + timedelta(seconds=1),
            )
            for _ in range(2)
        ]
    with database.session() as db:
        live = workers.live_workers(db, pool, within=10)
        assert before == 3
        assert workers.free_slots(live, db) == 1
        assert workers.free_slots([], db) == 0
        for w in live:
            workers.forget(db, w.id)
        for row in started:
            sessions.finalize(db, db.merge(row), status="ended", reason="ended_by_api")
