"""``thinnest backup``: a consistent copy of a live SQLite database (WAL included), and a clear
pointer to pg_dump for PostgreSQL. The command runs as a user runs it, in its own process."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tests._cli import run_thinnest
from thinnest.contracts.agent import AgentConfig
from thinnest.store import agents, keys, sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _populate(db: Database) -> str:
    with db.session() as s:
        owner = keys.get_or_create_owner(s, "backup-owner")
        keys.create_key(s, owner)
        agent = agents.create_agent(s, owner.id, AgentConfig(name="a"))
        row = sessions.create_session(
            s, owner_id=owner.id, agent_id=agent.id, agent_config={}, context={}, max_duration=60
        )
        return row.id


def test_backup_copies_a_live_database_consistently(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'thinnest.db'}")
    db.migrate()
    sid = _populate(db)
    # Committed turns that sit only in the -wal file (no checkpoint) belong in the copy.
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
    for i in range(50):
        with db.session() as s:
            sessions.add_turn(s, sid, role="user", text=f"before {i}")
    assert (tmp_path / "thinnest.db-wal").stat().st_size > 0

    # A writer keeps adding turns while the backup runs.
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            with db.session() as s:
                sessions.add_turn(s, sid, role="agent", text=f"during {i}")
            written.append(i)
            i += 1
            stop.wait(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        done = run_thinnest(tmp_path, "backup", str(tmp_path / "copies" / "copy.db"))
    finally:
        stop.set()
        thread.join(30)
    assert done.returncode == 0, done.stderr
    assert "backed up" in done.stdout
    assert written, "the writer ran during the backup"

    copy = sqlite3.connect(tmp_path / "copies" / "copy.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        texts = [r[0] for r in copy.execute("SELECT text FROM transcript_turns ORDER BY seq")]
        version = copy.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        copy.close()
    assert texts[:50] == [f"before {i}" for i in range(50)]
    during = texts[50:]  # a consistent snapshot: a prefix of what the writer committed
    assert during == [f"during {i}" for i in range(len(during))]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == version
    # The copy is a working database for Thinnest itself.
    restored = Database(f"sqlite:///{tmp_path / 'copies' / 'copy.db'}")
    with restored.session() as s:
        assert sessions.get_session(s, sid).id == sid
    restored.close()
    db.close()


def test_backup_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'thinnest.db'}")
    db.migrate()
    db.close()
    target = tmp_path / "copy.db"
    target.write_text("precious")
    refused = run_thinnest(tmp_path, "backup", str(target))
    assert refused.returncode == 1
    assert "exists already" in refused.stderr and "Traceback" not in refused.stderr
    assert target.read_text() == "precious"
    assert run_thinnest(tmp_path, "backup", str(target), "--force").returncode == 0
    assert target.read_bytes().startswith(b"SQLite format 3")


def test_backup_of_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    url = "postgresql+psycopg://thinnest:hunter2secret@127.0.0.1:5/thinnest"
    done = run_thinnest(
        tmp_path, "backup", str(tmp_path / "x.dump"), env={"THINNEST_DATABASE_URL": url}
    )
    assert done.returncode == 1
    assert "pg_dump --format=custom" in done.stderr
    assert "postgresql://thinnest:***@127.0.0.1:5/thinnest" in done.stderr
    assert "hunter2secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
