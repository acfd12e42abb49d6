"""The worker's metric files: the files of call processes that ended fold into one per type,
and a scrape reads the same totals before and after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from thinnest.metrics import compact

pytestmark = pytest.mark.unit

_CALL = """
from thinnest.metrics import CALLS_ENDED, CALLS_STARTED, TURN_LATENCY
CALLS_STARTED.inc()
CALLS_ENDED.labels(reason="user_left").inc()
TURN_LATENCY.labels(stage="stt").observe({seconds})
"""


def _call_process(folder: Path, seconds: float) -> None:
    """A process that counts one call, as a call process does, and exits."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    code = _CALL.format(seconds=seconds)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def _totals(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_ended_processes_fold_into_one_file_per_type_with_the_same_totals(
    tmp_path: Path,
) -> None:
    for seconds in (0.2, 0.4, 4.0):
        _call_process(tmp_path, seconds)
    assert len(list(tmp_path.glob("counter_*.db"))) == 3
    before = _totals(tmp_path)
    assert before[("thinnest_calls_started_total", ())] == 3

    assert compact(str(tmp_path)) == 6  # a counter and a histogram file per process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_ended.db", "histogram_ended.db"]
    assert _totals(tmp_path) == pytest.approx(before)  # the sums, added in another order

    # A later call adds to the folded totals; folding again keeps them.
    _call_process(tmp_path, 0.1)
    compact(str(tmp_path))
    after = _totals(tmp_path)
    assert after[("thinnest_calls_started_total", ())] == 4
    assert after[("thinnest_calls_ended_total", (("reason", "user_left"),))] == 4
    assert after[("thinnest_turn_latency_seconds_count", (("stage", "stt"),))] == 4
    assert after[("thinnest_turn_latency_seconds_sum", (("stage", "stt"),))] == pytest.approx(4.7)
    assert after[("thinnest_turn_latency_seconds_bucket", (("le", "0.2"), ("stage", "stt")))] == 2


def test_a_live_process_keeps_its_files(tmp_path: Path) -> None:
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    assert compact(str(tmp_path)) == 0
    assert (tmp_path / f"counter_{os.getpid()}.db").exists()
