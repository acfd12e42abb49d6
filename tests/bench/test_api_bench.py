"""``thinnest bench api`` loads ``POST /voice/start`` for real (bounded) and writes sane JSON.

On PostgreSQL too when THINNEST_TEST_DATABASE=postgresql. It checks that the bench works,
not the numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.bench._run import run_bench

pytestmark = pytest.mark.integration


def test_bench_api_times_voice_start(tmp_path: Path) -> None:
    database = (
        "postgresql" if os.environ.get("THINNEST_TEST_DATABASE") == "postgresql" else "sqlite"
    )
    args = ["api", "--requests", "30", "--seconds", "60", "--concurrency", "4"]
    proc, data = run_bench(tmp_path, *args, "--database", database, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "POST /voice/start" in proc.stdout
    start, livekit = data["runs"]
    assert start["what"] == "POST /voice/start" and start["database"] == database
    assert start["ok"] == start["requests"] == 30, start["failures"]
    assert start["api_errors_logged"] == 0
    assert (
        0 < start["latency_ms"]["p50"] <= start["latency_ms"]["p99"] <= start["latency_ms"]["max"]
    )
    assert start["throughput_rps"] > 0
    assert livekit["what"].startswith("LiveKit") and livekit["ok"] == 30


def test_bench_api_two_processes(tmp_path: Path) -> None:
    """``--processes 2``: the API as ``serve --workers 2``; every start answered, and the row
    compares it with LiveKit's room + dispatch alone on the same stack."""
    database = (
        "postgresql" if os.environ.get("THINNEST_TEST_DATABASE") == "postgresql" else "sqlite"
    )
    args = ["api", "--processes", "2", "--requests", "30", "--seconds", "60"]
    proc, data = run_bench(tmp_path, *args, "--database", database, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start, livekit = data["runs"]
    assert start["what"] == "POST /voice/start" and start["processes"] == 2
    assert start["ok"] == start["requests"] == 30, start["failures"]
    assert start["concurrency"] == 16 and start["api_errors_logged"] == 0
    assert start["rate_limit_store"] == "database"
    assert livekit["what"].startswith("LiveKit") and livekit["processes"] == 2
    assert livekit["ok"] == 30
    assert start["livekit_ratio"] == pytest.approx(
        start["throughput_rps"] / livekit["throughput_rps"]
    )
    assert start["livekit_ratio"] > 0
    # Two API processes ran the load, both of them serving (CPU used during it).
    assert len(start["cpu_s"]["api"]) == 2 and min(start["cpu_s"]["api"]) > 0.02, start["cpu_s"]
    assert livekit["cpu_s"]["livekit"] > 0
