"""Run ``python -m thinnest`` as a user runs it: its own process, on a data directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_thinnest(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``thinnest ARGS`` with ``THINNEST_DATA_DIR=data_dir`` (and ``env``) added to this
    process's environment; its output is captured as text. The timeout allows for a cold
    interpreter start on a loaded CI machine."""
    return subprocess.run(
        [sys.executable, "-m", "thinnest", *args],
        env={**os.environ, "THINNEST_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create_publishable_key(
    data_dir: Path, origin: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """As a user sets one up: the agent ``helper`` of the owner ``acme``, then a publishable key
    of acme's for it, usable from ``origin``, with ``options``; the second command's result."""
    assert run_thinnest(data_dir, "agents", "create", "helper", "--owner", "acme").returncode == 0
    command = ("keys", "create", "--owner", "acme", "--publishable", "--agent", "helper")
    return run_thinnest(data_dir, *command, "--origin", origin, *options)
