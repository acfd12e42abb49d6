"""Alembic migrations: up and down on a populated database keep working."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from thinnest.store import agents, keys, sessions
from thinnest.store.db import Database, downgrade, migrate

pytestmark = pytest.mark.integration


def test_upgrade_downgrade_upgrade_on_a_populated_copy(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # idempotent
    with db.session() as s:
        owner = keys.get_or_create_owner(s, "o")
        agent = agents.create_agent(s, owner.id, {"name": "a"})
        row = sessions.create_session(
            s,
            owner_id=owner.id,
            agent_id=agent.id,
            agent_config={"name": "a"},
            context={},
            max_duration=60,
        )
        sessions.add_turn(s, row.id, role="user", text="hi")
    tables = set(inspect(db.engine).get_table_names())
    assert {"owners", "api_keys", "agents", "sessions", "transcript_turns", "tool_calls",
            "workers"} <= tables

    downgrade(db.engine, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate(db.engine)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions")).scalar() == 0
    db.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.close()


def test_the_shared_database_is_at_head(database: Database) -> None:
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
