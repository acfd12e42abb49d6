"""Files that hold callers' data (the SQLite database, recordings): readable by this user only.

The database holds transcripts and contexts, a recording a caller's voice: files are created
0600 and their directories 0700, and an existing one with wider permissions (an older version
made them 0644 / 0755) is tightened when it is opened again.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

__all__ = ["private_copy", "private_dir", "private_file"]


def private_dir(path: Path) -> None:
    """Create the directory ``path`` (and its parents) mode 0700, or tighten it to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)


def private_file(path: Path) -> None:
    """Create the file ``path`` mode 0600 (or tighten it). A missing directory is created 0700;
    an existing one is left as it is (it may be the operator's home directory).

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    _tighten(path, 0o600)


def private_copy(source: Path, target_dir: Path, name: str) -> Path:
    """Copy ``source`` to ``target_dir/name``, the file 0600 in a 0700 directory; returns it."""
    private_dir(target_dir)
    target = target_dir / name
    partial = target.with_name(f".{name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)
    partial.replace(target)
    return target


def _tighten(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) & ~mode:
            path.chmod(mode)
    except OSError:  # not ours to change (a shared mount): leave it as the operator set it
        pass
