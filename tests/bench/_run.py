"""Run a ``thinnest bench`` command in a subprocess against a scratch data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_bench(
    tmp: Path, *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``thinnest bench ARGS --out tmp/out.json``; returns the process and the parsed JSON."""
    out = tmp / "out.json"
    env = {
        **os.environ,
        "THINNEST_DATA_DIR": str(tmp / "data"),
        # The cache the setup built (the worker's job processes load the offline models).
        "THINNEST_MODELS_DIR": str(REPO / ".thinnest" / "models"),
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "thinnest", "bench", *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    data = json.loads(out.read_text()) if out.exists() else None
    return proc, data
