"""Callers' data on disk is readable by its owner only: the SQLite database (and its WAL) 0600
in a 0700 directory, recordings 0600 in a 0700 directory, the dev stack's data dir 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from thinnest.store import keys
from thinnest.store.db import Database
from thinnest.store.files import private_copy, private_dir

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The usual umask (022), under which everything was made 0644 / 0755 before."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database = Database(f"sqlite:///{data_dir / 'thinnest.db'}")
    try:
        database.migrate()
        with database.session() as db:
            keys.get_or_create_owner(db, "someone")
        files = sorted(p.name for p in data_dir.iterdir())
        assert "thinnest.db" in files
        assert _mode(data_dir) == 0o700
        for name in files:  # the database, its -wal and -shm
            assert _mode(data_dir / name) == 0o600, name
    finally:
        database.close()


def test_an_existing_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Database(f"sqlite:///{path}").close()
    assert _mode(path) == 0o600


def test_recordings_are_private(tmp_path: Path) -> None:
    source = tmp_path / "audio.ogg"
    source.write_bytes(b"OggS" + b"\0" * 100)
    target_dir = tmp_path / "data" / "recordings"
    target = private_copy(source, target_dir, "session_1.ogg")
    assert target == target_dir / "session_1.ogg"
    assert target.read_bytes() == source.read_bytes()
    assert _mode(target) == 0o600
    assert _mode(target_dir) == 0o700
    assert [p.name for p in target_dir.iterdir()] == ["session_1.ogg"]  # no partial file left


def test_an_existing_recordings_dir_is_tightened(tmp_path: Path) -> None:
    target_dir = tmp_path / "recordings"
    target_dir.mkdir(mode=0o755)
    target_dir.chmod(0o755)
    private_copy(_some_file(tmp_path), target_dir, "s.ogg")
    assert _mode(target_dir) == 0o700


def test_the_data_dir_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / ".thinnest"
    private_dir(data_dir)
    assert _mode(data_dir) == 0o700


def _some_file(tmp_path: Path) -> Path:
    path = tmp_path / "some.ogg"
    path.write_bytes(b"x")
    return path


def test_an_in_memory_database_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = Database("sqlite://")
    try:
        database.migrate()
    finally:
        database.close()
    assert list(tmp_path.iterdir()) == []
