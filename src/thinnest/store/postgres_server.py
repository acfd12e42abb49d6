"""A throw-away PostgreSQL server from Debian's ``postgresql`` package: on a free loopback port
(the tests, ``thinnest bench api``), or on a host's address (``thinnest cluster``).

The same recipe as the test suite's fixture: ``initdb`` (trust auth, no fsync) and
``pg_ctl start`` in a fresh directory, run as the ``postgres`` user when we are root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from thinnest.errors import ConfigError

__all__ = ["start_postgres"]


def start_postgres(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wrap: tuple[str, ...] = (),
    allow: str | None = None,
) -> tuple[str, Callable[[], None]]:
    """Start PostgreSQL in ``workdir``; returns its SQLAlchemy URL and a stop function.

    Args:
        host / port: where it listens (port 0: a free one).
        wrap: a command prefix its commands run under (``ip netns exec NS``: in a namespace).
        allow: a network (CIDR) whose clients it trusts, beside loopback.

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
    prefix = [*wrap, *prefix]
    port = port or _free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run([*prefix, *initdb, "--no-sync"], check=True, capture_output=True)
    if allow:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {allow} trust\n")
    options = f"-p {port} -k {sock} -c listen_addresses={host} -c fsync=off"
    ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(workdir / "pg.log")]
    subprocess.run([*prefix, *ctl, "-o", options, "start"], check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )

    return f"postgresql+psycopg://postgres@{host}:{port}/postgres", stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
