"""The speech benchmark's output: a rich table with pass/fail columns, and the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = ["speech_table", "write_json"]

# (section, metric, statistic shown as "value", unit, scale, goal statistic)
_ROWS: tuple[tuple[str, str, str, str, float], ...] = (
    ("stt", "wer", "WER", "%", 100.0),
    ("stt", "latency_ms", "final after end of speech", "ms", 1.0),
    ("tts", "first_audio_ms", "first audio", "ms", 1.0),
    ("tts", "rtf", "real-time factor", "", 1.0),
    ("llm", "ttft_ms", "time to first token", "ms", 1.0),
    ("llm", "tokens_per_s", "tokens/s", "", 1.0),
)


def _fmt(value: float | None, unit: str, scale: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    scaled = value * scale
    digits = 2 if unit == "" else (1 if unit == "%" else 0)
    return f"{scaled:.{digits}f}{' %' if unit == '%' else ''}"


def speech_table(results: dict[str, Any]) -> Table:
    """The results as a table: provider, metric, p50, p95, goal and pass/fail.

    Args:
        results: what :func:`thinnest.bench.speech.run_speech_bench` returned.

    Returns:
        A rich table; WER shows the corpus WER in its own column as well, with its 95 %
        interval (utterances resampled) in brackets.
    """
    checks = {(c["provider"], c["metric"]): c for c in results["checks"]}
    table = Table(title=f"thinnest bench speech ({len(results['corpus'])} utterances)")
    for name in ("provider", "metric", "p50", "p95", "all", "goal", "pass"):
        table.add_column(name, justify="left" if name in ("provider", "metric") else "right")
    for section, metric, label, unit, scale in _ROWS:
        for entry in results[section]:
            stats = entry[metric]
            check = checks.get((entry["provider"], metric))
            goal = passed = ""
            if check is not None:
                goal = f"≤ {_fmt(check['goal'], unit, scale)} {check['statistic']}"
                passed = "[green]pass[/]" if check["passed"] else "[red]fail[/]"
            overall = _fmt(stats.get("corpus"), unit, scale) if "corpus" in stats else ""
            if stats.get("corpus_ci95"):  # the corpus rate's 95 % interval
                low, high = stats["corpus_ci95"]
                overall += f" ({low * scale:.1f}–{high * scale:.1f})"
            table.add_row(
                entry["provider"],
                f"{label}{f' ({unit})' if unit == 'ms' else ''}",
                _fmt(stats["p50"], unit, scale),
                _fmt(stats["p95"], unit, scale),
                overall,
                goal,
                passed,
            )
    return table


def write_json(results: dict[str, Any], path: Path) -> Path:
    """Write ``results`` to ``path`` (parents created; NaN written as ``null``)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(results), indent=2) + "\n", encoding="utf-8")
    return path
