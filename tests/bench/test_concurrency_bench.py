"""``thinnest bench concurrency`` ramps real calls (fixed providers, up to 2 at once) and
writes each level with its latency, continuity, CPU and memory.

It checks that the bench works, not the numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench._run import run_bench

pytestmark = pytest.mark.integration


def test_bench_concurrency_ramps_calls(tmp_path: Path) -> None:
    args = ["concurrency", "--stack", "fixed", "--max-calls", "2", "--turns", "1"]
    proc, data = run_bench(tmp_path, *args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max healthy" in proc.stdout
    first = data["levels"][0]
    assert first["stack"] == "fixed" and first["calls"] == 1
    assert first["answered"] == first["turns"] == 1, first["errors"]
    assert first["v2v_ms"]["p50"] > 0 and first["cpu_percent_per_call"] > 0
    assert first["memory_mb_per_call"] >= 0
    assert data["max_healthy"]["fixed"] in (0, 1, 2)
    for level in data["levels"]:
        assert isinstance(level["healthy"], bool) and ("why" in level)
