"""``thinnest bench``: the benchmarks (each runs, prints its table and writes its JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from thinnest.cli.output import err, out
from thinnest.config import get_settings

#: ``--models/--in-process`` of the benches that start a stack.
ModelsFlag = Annotated[
    bool,
    typer.Option(
        "--models/--in-process",
        help="shared model services (thinnest models), or models in each job process",
    ),
]

bench_app = typer.Typer(
    help="Benchmarks: speech models, latency, concurrency, API.", no_args_is_help=True
)


@bench_app.command("speech")
def bench_speech(
    count: Annotated[
        int | None,
        typer.Option(
            help="spoken utterances for the STT measures (default: every text in every voice)"
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="a small, fast run (4 utterances)")] = False,
    stt: Annotated[
        list[str] | None,
        typer.Option(
            help="whisper model, repeatable (default tiny.en, base); MODEL:full for the 30 s window"
        ),
    ] = None,
    stt_context: Annotated[
        str | None,
        typer.Option(
            help="what the agent said before each utterance, given to Whisper "
            "(default: the default greeting; '' for none)"
        ),
    ] = None,
    tts: Annotated[
        list[str] | None, typer.Option(help="TTS provider, repeatable (default piper, espeak)")
    ] = None,
    llm: Annotated[list[str] | None, typer.Option(help="LLM provider, repeatable")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """WER and latency of the offline STT, TTS and LLM providers, against the goals."""
    import asyncio

    from thinnest.bench.report import speech_table, write_json
    from thinnest.bench.speech import SpeechBenchOptions, default_out, run_speech_bench

    settings = get_settings()
    chosen: dict[str, Any] = {} if count is None else {"count": count}
    if stt_context is not None:
        chosen["stt_context"] = stt_context
    for key, value in (("stt_models", stt), ("tts", tts), ("llm", llm)):
        if value:
            chosen[key] = tuple(value)
    options = SpeechBenchOptions.quick(**chosen) if quick else SpeechBenchOptions(**chosen)
    results = asyncio.run(run_speech_bench(options, settings, progress=_progress))
    out.print(speech_table(results))
    path = write_json(results, out_file or default_out(settings))
    out.print(f"results: {path}", markup=False)


def _progress(msg: str) -> None:
    err.print(f"[dim]{escape(msg)}[/]")


def _run_bench(
    run: Any, options: Any, settings: Any, table: Any, name: str, out_file: Path | None
) -> dict[str, Any]:
    """Run one benchmark with progress on stderr, print its table, write its JSON."""
    import asyncio

    from thinnest.bench.latency import default_out
    from thinnest.bench.report import write_json

    results: dict[str, Any] = asyncio.run(run(options, settings, progress=_progress))
    out.print(table(results))
    path = write_json(results, out_file or default_out(settings, name))
    out.print(f"results: {path}", markup=False)
    return results


@bench_app.command("latency")
def bench_latency(
    count: Annotated[int, typer.Option(help="utterances per system and stack")] = 20,
    turns_per_call: Annotated[int, typer.Option(help="utterances per call")] = 5,
    stack: Annotated[
        list[str] | None, typer.Option(help="offline, fixed (repeatable; default both)")
    ] = None,
    models: ModelsFlag = True,
    peers: Annotated[bool, typer.Option(help="also run the livekit-agents peer")] = True,
    pipecat: Annotated[
        bool | None,
        typer.Option(
            help="also run the Pipecat peer (fixed stack); default: when .venv-pipecat exists"
        ),
    ] = None,
    pipecat_python: Annotated[
        Path | None, typer.Option(help="Python of the Pipecat virtualenv")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """Voice-to-voice latency of real calls (p50/p90/p95/max) and the engine's breakdown."""
    from thinnest.bench.latency import LatencyOptions, run_latency_bench
    from thinnest.bench.tables import latency_table

    settings = get_settings()
    options = LatencyOptions(
        count=count,
        turns_per_call=turns_per_call,
        stacks=tuple(stack or ("offline", "fixed")),
        models=models,
        peers=peers,
        pipecat=pipecat,
        pipecat_python=pipecat_python,
    )
    _run_bench(run_latency_bench, options, settings, latency_table, "latency", out_file)


@bench_app.command("turn")
def bench_turn(
    count: Annotated[
        int | None, typer.Option(help="utterances of the speech corpus (its clean ones are used)")
    ] = None,
    detector: Annotated[
        list[str] | None,
        typer.Option(
            help="turn detector, repeatable: livekit, transcript, smart-turn (Pipecat's Smart "
            "Turn v3.2, read from .venv-pipecat); default all three"
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """How each turn detector judges finished sentences and pauses inside them."""
    from thinnest.bench.tables import turn_table
    from thinnest.bench.turn import TurnBenchOptions, run_turn_bench

    chosen: dict[str, Any] = {} if count is None else {"count": count}
    if detector:
        chosen["detectors"] = tuple(detector)
    options = TurnBenchOptions(**chosen)
    _run_bench(run_turn_bench, options, get_settings(), turn_table, "turn", out_file)


@bench_app.command("conversation")
def bench_conversation(
    events: Annotated[int, typer.Option(help="scripted events in all")] = 30,
    per_call: Annotated[int, typer.Option(help="events in one call")] = 5,
    smoke: Annotated[
        bool, typer.Option(help="a small run: a pause, a barge-in and a backchannel, two calls")
    ] = False,
    voices: Annotated[
        str | None,
        typer.Option(
            help="caller voices, comma-separated: espeak-us, espeak-gb, espeak-f3, piper, "
            "hibari, each optionally +noise (default: six of them)"
        ),
    ] = None,
    webrtc: Annotated[
        bool, typer.Option(help="the last call over WebRTC (the others over the WebSocket gateway)")
    ] = True,
    models: ModelsFlag = True,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="a setting of the bench's API and worker, NAME=VALUE "
            "(interruption_min_duration=0.3; repeatable)",
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="the bench agent's fields as JSON, as POST /agents takes them: '{\"providers\": "
            '{"vad": {"name": "silero", "options": {"min_silence_duration": 0.3}}}}\''
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--json", "--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """Scripted calls: WER, right answers, v2v, barge-in stop, false cut-offs, pauses, resumes."""
    from thinnest.bench.conversation import (
        ConversationOptions,
        conversation_table,
        run_conversation_bench,
    )

    chosen: dict[str, Any] = {}
    if voices:
        chosen["voices"] = tuple(v.strip() for v in voices.split(",") if v.strip())
    options = ConversationOptions(
        events=events,
        per_call=per_call,
        smoke=smoke,
        webrtc=webrtc,
        models=models,
        settings=_settings_option(setting or []),
        agent=_agent_option(agent),
        **chosen,
    )
    _run_bench(
        run_conversation_bench,
        options,
        get_settings(),
        conversation_table,
        "conversation",
        out_file,
    )


def _settings_option(pairs: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` pairs, each checked against the settings it will set."""
    from pydantic import ValidationError

    from thinnest.config import Settings

    chosen: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lower().removeprefix("thinnest_")
        if not sep or name not in Settings.model_fields:
            raise typer.BadParameter(
                f"{pair!r}: expected NAME=VALUE with NAME a setting (see the README's "
                "configuration table), e.g. interruption_min_duration=0.3",
                param_hint="--set",
            )
        chosen[name] = value
    try:
        Settings(**chosen)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems, param_hint="--set") from None
    return chosen


def _agent_option(text: str | None) -> dict[str, Any]:
    """``--agent JSON``: an object of agent fields (the API checks the fields themselves)."""
    import json

    if text is None:
        return {}
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--agent") from None
    if not isinstance(fields, dict):
        raise typer.BadParameter("must be a JSON object of agent fields", param_hint="--agent")
    return fields


@bench_app.command("api")
def bench_api(
    requests: Annotated[int, typer.Option(help="requests per database (at most)")] = 1000,
    seconds: Annotated[float, typer.Option(help="time limit per database")] = 30.0,
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 16,
    processes: Annotated[
        list[int] | None,
        typer.Option(
            min=1, max=64, help="API processes, serve --workers N (repeatable; default 1)"
        ),
    ] = None,
    database: Annotated[
        list[str] | None, typer.Option(help="sqlite, postgresql (repeatable; default both)")
    ] = None,
    rate_limit_store: Annotated[
        str | None,
        typer.Option(help="the API's THINNEST_RATE_LIMIT_STORE: database or memory"),
    ] = None,
    postgres_url: Annotated[
        str | None, typer.Option(help="use this PostgreSQL instead of starting one")
    ] = None,
    profile: Annotated[bool, typer.Option(help="also profile the API (pyinstrument)")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """POST /voice/start throughput and p50/p99 latency under a bounded loopback load."""
    from thinnest.bench.apiload import ApiBenchOptions, run_api_bench
    from thinnest.bench.tables import api_table

    if rate_limit_store not in (None, "database", "memory"):
        raise typer.BadParameter("must be database or memory", param_hint="--rate-limit-store")
    settings = get_settings()
    options = ApiBenchOptions(
        requests=requests,
        seconds=seconds,
        concurrency=concurrency,
        processes=tuple(processes or (1,)),
        rate_limit_store=rate_limit_store,
        databases=tuple(database or ("sqlite", "postgresql")),
        postgres_url=postgres_url,
        profile=profile,
    )
    _run_bench(run_api_bench, options, settings, api_table, "api", out_file)


@bench_app.command("concurrency")
def bench_concurrency(
    stack: Annotated[
        list[str] | None, typer.Option(help="offline, fixed (repeatable; default both)")
    ] = None,
    max_calls: Annotated[int, typer.Option(help="highest level (1, 2, 4, … up to it)")] = 32,
    turns: Annotated[int, typer.Option(help="utterances per call at each level")] = 3,
    calls: Annotated[
        list[int] | None,
        typer.Option(help="run these levels instead of the ramp (repeatable)", min=1, max=256),
    ] = None,
    models: ModelsFlag = True,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """Ramp concurrent calls until latency or audio continuity degrades; CPU/memory per call."""
    from thinnest.bench.concurrency import ConcurrencyOptions, run_concurrency_bench
    from thinnest.bench.tables import concurrency_table

    settings = get_settings()
    options = ConcurrencyOptions(
        stacks=tuple(stack or ("offline", "fixed")),
        max_calls=max(calls or [max_calls]),
        turns=turns,
        levels=tuple(calls or ()),
        models=models,
    )
    _run_bench(run_concurrency_bench, options, settings, concurrency_table, "concurrency", out_file)


@bench_app.command("soak")
def bench_soak(
    seconds: Annotated[float, typer.Option(help="how long new calls are started")] = 600.0,
    stack: Annotated[str, typer.Option(help="fixed (the engine's own cost) or offline")] = "fixed",
    max_calls: Annotated[int, typer.Option(help="stop after this many calls")] = 10_000,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """Short calls one after another; leaked processes, rooms, descriptors or memory."""
    from thinnest.bench.soak import SoakOptions, run_soak_bench
    from thinnest.bench.tables import soak_table

    settings = get_settings()
    options = SoakOptions(seconds=seconds, stack=stack, max_calls=max_calls)
    results = _run_bench(run_soak_bench, options, settings, soak_table, "soak", out_file)
    if not results["pass"]:
        raise typer.Exit(1)
