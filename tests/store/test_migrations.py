"""Alembic migrations: up and down on a populated database keep working, step by step."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, text

from thinnest.contracts.agent import AgentConfig
from thinnest.store import agents, keys, sessions, workers
from thinnest.store.backup import backup
from thinnest.store.db import Database, alembic_config, downgrade, migrate
from thinnest.store.models import Worker

pytestmark = pytest.mark.integration


def test_upgrade_downgrade_upgrade_on_a_populated_copy(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # idempotent
    with db.session() as s:
        owner = keys.get_or_create_owner(s, "o")
        agent = agents.create_agent(s, owner.id, AgentConfig(name="a"))
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
    assert {
        "owners",
        "api_keys",
        "agents",
        "sessions",
        "transcript_turns",
        "tool_calls",
        "workers",
    } <= tables

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


def _revisions() -> list[str]:
    """Every revision, base first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() or 0)
            for t in ("owners", "api_keys", "agents", "sessions", "transcript_turns")
        }


def test_each_migration_steps_down_and_up_on_a_copy_keeping_the_data(tmp_path: Path) -> None:
    """A populated database is copied with ``thinnest backup``'s function; on the copy every
    revision is stepped down to the first and back up to head, one at a time, and the rows
    the first revision can hold survive the round trip. The original is not touched."""
    original = Database(f"sqlite:///{tmp_path / 'live.db'}")
    original.migrate()
    with original.session() as s:
        owner = keys.get_or_create_owner(s, "o")
        keys.create_key(s, owner)
        agent = agents.create_agent(s, owner.id, AgentConfig(name="a"))
        for n in range(3):
            row = sessions.create_session(
                s,
                owner_id=owner.id,
                agent_id=agent.id,
                agent_config={"name": "a"},
                context={"n": n},
                max_duration=60,
            )
            sessions.add_turn(s, row.id, role="user", text=f"turn {n}")
    before = _counts(original)
    assert all(before.values())
    backup(original.url, tmp_path / "copy.db")
    copy = Database(f"sqlite:///{tmp_path / 'copy.db'}")

    revisions = _revisions()
    assert len(revisions) >= 2
    for target in reversed(revisions[:-1]):  # head-1 ... first
        downgrade(copy.engine, target)
        with copy.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == target
        assert _counts(copy) == before, f"rows lost stepping down to {target}"
    for target in revisions[1:]:
        migrate(copy.engine, target)
        assert _counts(copy) == before, f"rows lost stepping up to {target}"
    with copy.session() as s:  # the stepped copy still works with today's code
        assert len(keys.list_keys(s)) == before["api_keys"]
    with original.engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert head == revisions[-1]
    copy.close()
    original.close()


def test_the_shared_database_is_at_head(database: Database) -> None:
    with database.engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == _revisions()[-1]


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind the suite runs on (a new one on the PostgreSQL server)."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"fresh_{secrets.token_hex(4)}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_0005_records_session_keys_on_a_populated_database_at_0004(fresh_url: str) -> None:
    """Sessions stored before 0005 have no key and count for none; keys get no cap of their
    own (the server's default applies); new sessions record their key."""
    db = Database(fresh_url)
    migrate(db.engine, "0004")
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO owners (id, name, created_at) VALUES ('o1', 'o', :t)"), {"t": _T}
        )
        conn.execute(
            text(
                "INSERT INTO api_keys (id, owner_id, name, kind, prefix, key_hash, created_at) "
                "VALUES ('k1', 'o1', '', 'publishable', 'tn_pk_x', 'h1', :t)"
            ),
            {"t": _T},
        )
        for n in range(3):
            conn.execute(
                text(
                    "INSERT INTO sessions (id, owner_id, agent_id, agent_config, context, "
                    "recording, max_duration, status, created_at) VALUES "
                    "(:id, 'o1', 'a1', '{}', '{}', false, 60, 'active', :t)"
                ),
                {"id": f"s{n}", "t": _T},
            )
    migrate(db.engine)
    columns = {c["name"]: c for c in inspect(db.engine).get_columns("sessions")}
    assert columns["api_key_id"]["nullable"]
    indexed = {tuple(i["column_names"]) for i in inspect(db.engine).get_indexes("sessions")}
    assert ("api_key_id", "status") in indexed
    with db.session() as s:
        assert [sessions.get_session(s, f"s{n}").api_key_id for n in range(3)] == [None] * 3
        key = keys.list_keys(s)[0]
        assert key.max_open_sessions is None
        assert keys.max_open_sessions(key, 2) == 2
        assert sessions.count_open(s, "k1") == 0  # the old sessions count for no key
        sessions.create_session(
            s,
            owner_id="o1",
            agent_id="a1",
            api_key_id="k1",
            agent_config={},
            context={},
            max_duration=60,
        )
    with db.session() as s:
        assert sessions.count_open(s, "k1") == 1
    downgrade(db.engine, "0004")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sessions")).scalar() == 4
    migrate(db.engine)
    db.close()


_T = "2026-12-01 00:00:00"


def test_0006_gives_workers_stored_before_it_no_model_services(fresh_url: str) -> None:
    """A worker row from before 0006 says "" (models in its processes): it still takes calls."""
    db = Database(fresh_url)
    migrate(db.engine, "0005")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workers (id, agent_name, host, pid, active_jobs, max_jobs, "
                "session_ids, started_at, last_seen) VALUES "
                "('w1', 'thinnest-agent', 'h', 1, 0, 4, '[]', :t, :t)"
            ),
            {"t": _T},
        )
    migrate(db.engine)
    with db.session() as s:
        worker = s.get(Worker, "w1")
        assert worker is not None and worker.models_status == ""
        assert workers.models_usable(worker)
        worker.models_status = "http://m: stt down"
    with db.session() as s:
        assert not workers.models_usable(s.get(Worker, "w1"))
    downgrade(db.engine, "0005")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM workers")).scalar() == 1
    migrate(db.engine)
    db.close()


def test_0008_adds_and_drops_the_webhook_tables(fresh_url: str) -> None:
    db = Database(fresh_url)
    migrate(db.engine, "0007")
    assert not {"webhook_endpoints", "webhook_deliveries"} & set(
        inspect(db.engine).get_table_names()
    )
    migrate(db.engine)
    assert {"webhook_endpoints", "webhook_deliveries"} <= set(inspect(db.engine).get_table_names())
    indexes = {i["name"] for i in inspect(db.engine).get_indexes("webhook_deliveries")}
    assert {"ux_webhook_deliveries_event", "ix_webhook_deliveries_due"} <= indexes
    downgrade(db.engine, "0007")
    assert not {"webhook_endpoints", "webhook_deliveries"} & set(
        inspect(db.engine).get_table_names()
    )
    migrate(db.engine)
    db.close()
