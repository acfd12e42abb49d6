"""``thinnest backup``: a consistent copy of the database while everything keeps running.

SQLite: SQLite's online backup API copies the pages of one consistent snapshot (WAL
included: committed transactions still in the ``-wal`` file are part of it) into a new
file, while the API and workers go on reading and writing; the copy is checked with
``PRAGMA integrity_check`` and renamed into place only when whole. PostgreSQL: ``pg_dump``
is the tool; this says how to run it.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from thinnest.errors import ConfigError, ConflictError, ThinnestError

#: Pages copied per step; between steps writers may go on (the backup restarts if they do).
PAGES_PER_STEP = 1024


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    tables: int


def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        raise ConfigError(f"not an SQLite file database: {url.render_as_string()}")
    return Path(url.database)


def pg_dump_hint(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=True)


def backup(database_url: str, dest: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the database at ``database_url`` into the SQLite file ``dest``."""
    if make_url(database_url).drivername.startswith("postgresql"):
        raise ConfigError(
            "thinnest backup copies SQLite databases; for PostgreSQL use pg_dump, e.g. "
            f"`pg_dump --format=custom --file {dest} '{pg_dump_hint(database_url)}'` "
            "(restore with pg_restore)",
            code="use_pg_dump",
        )
    source = sqlite_path(database_url)
    if not source.is_file():
        raise ConfigError(f"no database at {source}", code="no_database")
    dest = dest.expanduser()
    if dest.resolve() == source.resolve():
        raise ConfigError("the backup must not overwrite the database itself", field="path")
    if dest.exists() and not overwrite:
        raise ConflictError(f"{dest} exists already (use --force to replace it)", field="path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        out = sqlite3.connect(partial)
        try:
            src.backup(out, pages=PAGES_PER_STEP)
            check = out.execute("PRAGMA integrity_check").fetchone()[0]
            tables = out.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        finally:
            out.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise ThinnestError(f"backup of {source} failed: {exc}", code="backup_failed") from exc
    finally:
        src.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise ThinnestError(f"the backup copy is damaged: {check}", code="backup_failed")
    os.replace(partial, dest)
    return BackupResult(dest, dest.stat().st_size, int(tables))
