"""Rich tables of the latency, concurrency and API benchmarks."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

__all__ = ["api_table", "concurrency_table", "latency_table", "soak_table", "turn_table"]


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.0f}"


def latency_table(results: dict[str, Any]) -> Table:
    table = Table(title="thinnest bench latency: end of user speech → first agent audio (ms)")
    heads = ("system", "stack", "turns", "p50", "p90", "p95", "max")
    parts = ("eot", "stt", "llm ttft", "tts ttfb", "rest", "overhead p50", "late")
    for name in heads + parts:
        table.add_column(name, justify="left" if name in ("system", "stack") else "right")
    for s in results["summaries"]:
        v, b = s["v2v_ms"], s["breakdown_p50_ms"]
        overhead = s.get("overhead_ms", {}).get("p50")
        table.add_row(
            s["system"],
            s["stack"],
            f"{s['answered']}/{s['turns']}",
            _ms(v["p50"]),
            _ms(v["p90"]),
            _ms(v["p95"]),
            _ms(v["max"]),
            _ms(b["end_of_turn_delay"]),
            _ms(b["stt"]),
            _ms(b["llm_ttft"]),
            _ms(b["tts_ttfb"]),
            _ms(b["rest"]),
            _ms(overhead),
            f"{s['late_frames']}/{s['frames']}",
        )
    for r in results.get("ratios", []):
        table.caption = (table.caption or "") + (
            f"{r['stack']}: thinnest/{r['peer']} p50 ×{r['p50']:.2f}, p95 ×{r['p95']:.2f}   "
        )
    for system, why in results.get("skipped", {}).items():
        table.caption = (table.caption or "") + f"{system} not run: {why}   "
    return table


def concurrency_table(results: dict[str, Any]) -> Table:
    table = Table(title="thinnest bench concurrency")
    for name in (
        "stack",
        "calls",
        "turns",
        "v2v p50",
        "v2v p95",
        "late %",
        "quiet %",
        "cpu %/call",
        "MB/call",
        "MB job",
        "MB models",
        "join p50",
        "greet p50",
        "healthy",
    ):
        table.add_column(name, justify="left" if name == "stack" else "right")
    for level in results["levels"]:
        table.add_row(
            level["stack"],
            str(level["calls"]),
            f"{level['answered']}/{level['turns']}",
            _ms(level["v2v_ms"]["p50"]),
            _ms(level["v2v_ms"]["p95"]),
            f"{100 * level['late_ratio']:.1f}",
            f"{100 * level['quiet_ratio']:.1f}",
            f"{level['cpu_percent_per_call']:.0f}",
            f"{level['memory_mb_per_call']:.0f}",
            f"{level.get('memory_mb_job_process', float('nan')):.0f}",
            f"{level.get('memory_mb_services', float('nan')):.0f}",
            _ms(level.get("join_ms", {}).get("p50", float("nan"))),
            _ms(level.get("greeting_ms", {}).get("p50", float("nan"))),
            "[green]yes[/]" if level["healthy"] else f"[red]no[/] {level['why']}",
        )
    table.caption = "max healthy: " + ", ".join(
        f"{k} {v}" for k, v in results["max_healthy"].items()
    )
    return table


def api_table(results: dict[str, Any]) -> Table:
    table = Table(title="thinnest bench api: POST /voice/start")
    names = (
        "database",
        "processes",
        "what",
        "requests",
        "ok",
        "in flight",
        "req/s",
        "× LiveKit",
        "p50 ms",
        "p99 ms",
        "max",
    )
    for name in names:
        table.add_column(name, justify="left" if name in ("database", "what") else "right")
    for r in results["runs"]:
        ratio = r.get("livekit_ratio")
        table.add_row(
            r["database"],
            str(r.get("processes", 1)),
            r["what"],
            str(r["requests"]),
            str(r["ok"]),
            str(r["concurrency"]),
            f"{r['throughput_rps']:.0f}",
            "" if ratio is None else f"{ratio:.2f}",
            _ms(r["latency_ms"]["p50"]),
            _ms(r["latency_ms"]["p99"]),
            _ms(r["latency_ms"]["max"]),
        )
    return table


def soak_table(results: dict[str, Any]) -> Table:
    before, after = results["before"], results["after"]
    calls = max(1, results["calls"])
    table = Table(
        title=f"thinnest bench soak: {results['calls']} calls, stack {results['options']['stack']}"
    )
    for name in ("measure", "before", "after", "change", "bound"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    grown = after["main_rss_mb"] - before["main_rss_mb"]
    bounds = results["bounds"]
    rows = [
        ("worker processes", before["processes"], after["processes"], "", "same"),
        (
            "worker main RSS (MB)",
            before["main_rss_mb"],
            after["main_rss_mb"],
            f"{grown:+.1f} ({grown / calls:+.2f}/call)",
            f"≤ {bounds['main_rss_growth_mb']:g} ({bounds['rss_growth_per_call_mb']:g}/call)",
        ),
        (
            "worker tree RSS (MB)",
            before["tree_rss_mb"],
            after["tree_rss_mb"],
            f"{after['tree_rss_mb'] - before['tree_rss_mb']:+.1f}",
            "",
        ),
        (
            "worker file descriptors",
            before["worker_fds"],
            after["worker_fds"],
            f"{after['worker_fds'] - before['worker_fds']:+d}",
            f"≤ +{bounds['fd_growth']}",
        ),
        ("failed calls", "", results["failed_calls"], "", "0"),
        ("rooms left open", "", len(results["rooms_left"]), "", "0"),
        (
            "answer p50 (ms): first / last tenth",
            _ms(results["v2v_ms"]["first_tenth_p50"]),
            _ms(results["v2v_ms"]["last_tenth_p50"]),
            "",
            "",
        ),
    ]
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    verdict = "pass" if results["pass"] else "FAIL: " + "; ".join(results["problems"])
    table.caption = f"call p50 {results['call_s']['p50']:.1f} s; {verdict}"
    return table


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / max(whole, 1):.0f} %)"


def turn_table(results: dict[str, Any]) -> Table:
    delays = results["endpointing_ms"]
    table = Table(
        title="thinnest bench turn: finished sentences and pauses inside them",
        caption=f"held: judged unfinished, waits up to {delays['max']:.0f} ms instead of "
        f"{delays['min']:.0f} ms after the speech",
    )
    heads = ("detector", "finished sentences held", "pauses held", "wait after a sentence")
    for name in (*heads, "one verdict"):
        table.add_column(name, justify="left" if name == "detector" else "right")
    for name, r in results["detectors"].items():
        table.add_row(
            name,
            _share(r["ends_held"], r["ends"]),
            _share(r["pauses_held"], r["pauses"]),
            f"{_ms(r['wait_after_end_ms'])} ms",
            f"{_ms(r.get('verdict_ms'))} ms",
        )
    return table
