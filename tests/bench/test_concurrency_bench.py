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
    # The agent's join and its greeting, timed from the caller's connection.
    assert first["join_ms"]["n"] == 1 and 0 <= first["join_ms"]["p50"] < 60_000
    assert first["greeting_ms"]["n"] == 1 and first["greeting_ms"]["p50"] > 0
    assert data["max_healthy"]["fixed"] in (0, 1, 2)
    for level in data["levels"]:
        assert isinstance(level["healthy"], bool) and ("why" in level)


#: What one more call may add to the engine's and the model services' memory (PSS), with
#: margin: measured about 145 MB a call on a 2-core machine (docs/benchmarks.md); a job
#: process holding its own models adds 700 MB and more.
_MB_PER_CALL = {"fixed": 300.0, "offline": 400.0}


@pytest.mark.timeout(900)
# 4 fixed-provider calls: the most a 2-core machine keeps healthy with their callers beside
# them (at 8 the callers and the engine share the cores and answers come late).
@pytest.mark.parametrize(("stack", "calls"), [("fixed", 4), ("offline", 2)])
def test_concurrent_calls_on_the_shared_models_are_all_answered_and_light(
    tmp_path: Path, stack: str, calls: int
) -> None:
    """The smoke test of issue 19's targets: every turn of concurrent calls answered, each
    call adding a connection's memory, not a copy of the models."""
    args = ["concurrency", "--stack", stack, "--calls", str(calls), "--turns", "1"]
    proc, data = run_bench(tmp_path, *args, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [level] = data["levels"]
    assert level["calls"] == calls
    assert level["answered"] == level["turns"] == calls, level["errors"]
    assert 0 <= level["memory_mb_per_call"] <= _MB_PER_CALL[stack], level
    assert level["memory_mb_services"] > 300  # the models live in the services
