"""Charts of a latency run (matplotlib PNGs): the histogram and the per-component breakdown.

``python -m thinnest.bench.charts latency.json docs/images/`` writes
``latency-histogram.png`` (voice-to-voice of every answered turn, one series per system
and stack) and ``latency-breakdown.png`` (median end-of-turn delay, LLM time to first
token, TTS time to first audio and the rest, stacked, per system and stack).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["breakdown_chart", "histogram"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram(results: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = {
        name: [t["v2v_ms"] for t in turns if t["v2v_ms"] is not None]
        for name, turns in results["turns"].items()
    }
    top = max((max(v) for v in series.values() if v), default=1000.0)
    bins = [i * 100 for i in range(int(top // 100) + 2)]
    for name, values in series.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.55, label=f"{name} (n={len(values)})")
    ax.set_xlabel("end of user speech → first agent audio (ms)")
    ax.set_ylabel("turns")
    ax.set_title("Voice-to-voice latency at the caller")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def breakdown_chart(results: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    parts = (
        ("end_of_turn_delay", "end of turn (VAD silence, STT, endpointing)"),
        ("llm_ttft", "LLM first token"),
        ("tts_ttfb", "TTS first audio"),
        ("rest", "rest (engine, WebRTC, overlap)"),
    )
    labels: list[str] = []
    stacks: dict[str, list[float]] = {key: [] for key, _ in parts}
    for s in results["summaries"]:
        b = s["breakdown_p50_ms"]
        eot = b.get("end_of_turn_delay")
        if not isinstance(eot, int | float) or math.isnan(eot):  # no metrics (Pipecat)
            continue
        labels.append(f"{s['system']}\n{s['stack']}")
        for key, _ in parts:
            value = b.get(key)
            stacks[key].append(max(0.0, value) if isinstance(value, int | float) else 0.0)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = [0.0] * len(labels)
    for key, label in parts:
        ax.bar(labels, stacks[key], bottom=bottom, label=label)
        bottom = [a + b for a, b in zip(bottom, stacks[key], strict=True)]
    ax.set_ylabel("ms (medians)")
    ax.set_title("Where the time goes (engine's per-turn metrics, medians)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m thinnest.bench.charts LATENCY.json OUT_DIR", file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for path in (
        histogram(results, out / "latency-histogram.png"),
        breakdown_chart(results, out / "latency-breakdown.png"),
    ):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
