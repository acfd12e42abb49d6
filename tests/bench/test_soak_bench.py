"""``thinnest bench soak`` runs short calls one after another (fixed providers, a few
calls) and reports what the worker kept: processes, memory, descriptors, rooms.

It checks that the bench works, not the numbers (the CI soak test holds the bounds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench._run import run_bench

pytestmark = pytest.mark.integration


def test_bench_soak_runs_calls_and_reports_the_worker(tmp_path: Path) -> None:
    proc, data = run_bench(tmp_path, "soak", "--seconds", "60", "--max-calls", "2", timeout=900)
    assert data is not None, proc.stderr[-3000:]
    assert "thinnest bench soak" in proc.stdout
    assert data["calls"] == 2 and data["failed_calls"] == 0, data["errors"]
    assert data["v2v_ms"]["p50"] > 0
    for snapshot in (data["before"], data["after"]):
        assert snapshot["processes"] >= 2 and snapshot["main_rss_mb"] > 0
        assert snapshot["worker_fds"] > 0
    assert isinstance(data["pass"], bool) and isinstance(data["problems"], list)
    assert proc.returncode == (0 if data["pass"] else 1)


def test_bench_soak_refuses_an_unknown_stack(tmp_path: Path) -> None:
    proc, data = run_bench(tmp_path, "soak", "--stack", "cloud", timeout=120)
    assert proc.returncode == 1 and data is None
    assert "unknown stack 'cloud'" in proc.stderr and "Traceback" not in proc.stderr
