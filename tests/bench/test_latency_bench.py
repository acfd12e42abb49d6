"""``thinnest bench latency`` runs end to end on a tiny set: our engine and both peers
(livekit-agents, Pipecat), fixed providers, one utterance each; the JSON holds a timed turn
and the engine's breakdown.

It checks that the bench works, not the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench._run import run_bench
from thinnest.bench.charts import breakdown_chart, histogram

pytestmark = pytest.mark.integration


def test_bench_latency_times_a_turn_on_each_system(tmp_path: Path) -> None:
    args = ["latency", "--count", "1", "--turns-per-call", "1", "--stack", "fixed", "--pipecat"]
    proc, data = run_bench(tmp_path, *args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "thinnest bench latency" in proc.stdout
    assert data["bench"] == "latency"
    by_system = {s["system"]: s for s in data["summaries"]}
    assert set(by_system) == {"thinnest", "livekit-agents", "pipecat"}
    assert data["skipped"] == {}
    for summary in by_system.values():
        assert summary["stack"] == "fixed"
        assert summary["answered"] == summary["turns"] == 1, summary["errors"]
        v2v = summary["v2v_ms"]["p50"]
        # Answered, within reason. (Not compared with known_floor_ms: the caller's end of
        # speech is the end of the WAV, whose last ~100 ms are espeak's trailing silence.)
        assert 0 < v2v < 30000
        assert summary["frames"] > 0
    ours = by_system["thinnest"]["breakdown_p50_ms"]
    # The engine's own metrics events arrived and were matched to the turn.
    assert ours["llm_ttft"] >= 200 and ours["tts_ttfb"] >= 100
    assert ours["end_of_turn_delay"] > 0
    assert {r["peer"] for r in data["ratios"]} == {"livekit-agents", "pipecat"}
    assert all(r["p50"] > 0 for r in data["ratios"])
    turn = data["turns"]["thinnest/fixed"][0]
    assert turn["text"] and turn["v2v_ms"] == pytest.approx(by_system["thinnest"]["v2v_ms"]["max"])
    # The charts render from the JSON.
    assert histogram(data, tmp_path / "h.png").stat().st_size > 1000
    assert breakdown_chart(data, tmp_path / "b.png").stat().st_size > 1000
    json.dumps(data)
