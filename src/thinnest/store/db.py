"""Database engine and sessions; SQLite (WAL) by default, PostgreSQL by URL; migrated on start."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from thinnest.contracts import jsonvalue
from thinnest.errors import UnavailableError
from thinnest.store.files import private_file

_MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """Create an engine; a SQLite file gets its private directory and file, WAL mode and a
    busy timeout. JSON columns go through :mod:`thinnest.contracts.jsonvalue` both ways."""
    kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        "json_serializer": jsonvalue.dumps,
        "json_deserializer": jsonvalue.loads,
    }
    if url.startswith("sqlite"):
        path = make_url(url).database  # None or "" for ``sqlite://`` (in memory)
        if path and path != ":memory:":
            private_file(Path(path))
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL keeps readers and the writer apart and survives a crash of any process.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


class Database:
    """An engine plus a session factory: the one handle the API, CLI and engine share."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite_writer = threading.Lock() if url.startswith("sqlite") else None

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A unit of work that writes from its first statement on (it locks a row first).

        SQLite has one writer at a time, and a transaction that waits for it sleeps in
        SQLite's busy handler, waking at up to 100 ms intervals: under load a few such
        transactions wait seconds while others pass (p99 ×4 in ``bench api``). Here the
        threads of this process queue on one lock instead, so each starts as soon as the one
        before it commits. PostgreSQL needs none: its row locks are the queue.
        """
        if self._sqlite_writer is None:
            with self.session() as session:
                yield session
            return
        with self._sqlite_writer, self.session() as session:
            yield session

    def ping(self) -> None:
        """Raise :class:`UnavailableError` unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not reachable"
            raise UnavailableError(
                "database is not reachable", code="database_unavailable"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()
