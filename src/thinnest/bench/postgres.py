"""A throw-away PostgreSQL server from Debian's ``postgresql`` package, on a free loopback port.

The same recipe as the test suite's fixture: ``initdb`` (trust auth, no fsync) and
``pg_ctl start`` in a fresh directory, run as the ``postgres`` user when we are root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from thinnest.bench.stack import free_port
from thinnest.errors import ConfigError

__all__ = ["start_postgres"]


def start_postgres(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Start PostgreSQL in ``workdir``; returns its SQLAlchemy URL and a stop function.

    Raises:
        ConfigError: PostgreSQL is not installed (``scripts/setup.sh --test`` installs it).
    """
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise ConfigError(
            "PostgreSQL is not installed: run `scripts/setup.sh --test`, or pass --postgres-url"
        )
    bindir = versions[-1].parent
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    data, sock = workdir / "pgdata", workdir / "pgsock"
    sock.mkdir(exist_ok=True)
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, "postgres")
        shutil.chown(sock, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run([*prefix, *initdb, "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(workdir / "pg.log")]
    subprocess.run([*prefix, *ctl, "-o", options, "start"], check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop
