"""The ``thinnest`` command: thin typer commands over the same functions the API uses."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from thinnest import __version__
from thinnest.bootstrap import DEFAULT_OWNER, DevIdentity
from thinnest.config import Settings, get_settings
from thinnest.errors import ThinnestError, ValidationError
from thinnest.log import configure
from thinnest.store import agents as agents_store
from thinnest.store import keys as keys_store
from thinnest.store.db import Database

app = typer.Typer(
    help="Thinnest: real-time voice AI agents on LiveKit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
agents_app = typer.Typer(help="Manage agents.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")

# Piped output keeps whole ids rather than folding them to a default 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

OwnerOpt = Annotated[str, typer.Option("--owner", help="owner (tenant) name")]


def _database(settings: Settings) -> Database:
    db = Database(settings.resolved_database_url)
    db.migrate()
    return db


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (THINNEST_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (THINNEST_API_PORT)")] = None,
) -> None:
    """Run the API (and the WebSocket gateway)."""
    import uvicorn

    from thinnest.api.main import create_app

    settings = get_settings()
    updates: dict[str, Any] = {}
    if host:
        updates["api_host"] = host
    if port:
        updates["api_port"] = port
    settings = settings.model_copy(update=updates)
    configure(settings.log_level)
    settings.livekit_credentials()  # fail early with a clear message
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run a voice engine worker (scale out by running more)."""
    from thinnest.engine.worker import run_worker

    settings = get_settings()
    configure(settings.log_level)
    run_worker(settings)


@app.command()
def call(
    agent: Annotated[str, typer.Option(help="agent id or name")] = "default",
    wav: Annotated[
        Path | None, typer.Option(help="16-bit PCM WAV (mono, any rate) to say after the greeting")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="save the agent's audio to this WAV")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="API key; default: the dev stack's key")
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(help="API base URL; default: the dev stack")
    ] = None,
    hang_up_after: Annotated[
        float, typer.Option(help="seconds of agent silence after its answer before hanging up")
    ] = 3.0,
    max_seconds: Annotated[float, typer.Option(help="hang up after this long in any case")] = 120,
) -> None:
    """Call an agent: print the live transcript, say a WAV, save what the agent says.

    Exits when the call ends; exit code 1 when no agent answered (or the call failed).
    """
    import asyncio

    from thinnest.calls import check_out, check_wav, run_call

    # Everything the call needs is checked before a session is started for it.
    if wav is not None:
        check_wav(wav)
    if out is not None:
        check_out(out)
    settings = get_settings()
    key = api_key or settings.dev_credentials().get("api_key")
    if not key:
        raise ValidationError(
            "no API key: pass --api-key (or run `thinnest dev` first)", field="api_key"
        )
    try:
        code = asyncio.run(
            run_call(
                api_url or settings.resolved_public_base_url,
                key,
                agent,
                wav=wav,
                out=out,
                hang_up_after=hang_up_after,
                max_seconds=max_seconds,
                print_line=out_line,
            )
        )
    except ThinnestError as exc:
        print_error(exc)
        code = 1
    except KeyboardInterrupt:
        err.print("hung up (Ctrl-C)")
        code = 130
    # The call is over and its output written. Leave without the interpreter's teardown:
    # livekit's native threads can abort the process while it unwinds (seen in CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def out_line(text: str) -> None:
    out.print(text, markup=False)


def _print_dev_banner(settings: Settings, ident: DevIdentity) -> None:
    base = settings.resolved_public_base_url
    out.print("\n[bold green]Thinnest dev stack is running[/] (Ctrl-C stops everything)\n")
    if settings.resolved_web_demo:
        out.print(f"  [bold]Demo page     {base}/demo[/]   (open it, press Call, talk)")
    out.print(f"  API           {base}   (OpenAPI docs: {base}/docs)")
    out.print(f"  LiveKit       {settings.resolved_public_livekit_url}")
    out.print(f"  data dir      {escape(str(settings.data_dir.resolve()))}")
    out.print(f"  agent id      {ident.agent_id}")
    out.print(f"  API key       {ident.api_key}\n")
    out.print("Start a session:")
    out.print(
        f"  curl -s -X POST {base}/voice/start -H 'Authorization: Bearer {ident.api_key}' "
        f"-H 'Content-Type: application/json' -d '{{\"agent_id\": \"{ident.agent_id}\"}}'\n"
    )
    out.print("Talk to the agent (in another terminal):")
    out.print("  espeak-ng -w question.wav 'How many legs does a spider have?'")
    out.print("  .venv/bin/thinnest call --wav question.wav --out answer.wav\n")


@app.command()
def dev() -> None:
    """Start everything on loopback: LiveKit server, API, voice engine; print a key and agent."""
    from thinnest.devstack import DevStack

    settings = get_settings()
    configure(settings.log_level)
    stack = DevStack(settings)
    stack.on_ready = lambda ident: _print_dev_banner(stack.settings, ident)
    raise typer.Exit(stack.run())


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="file to write the copy to")],
    force: Annotated[bool, typer.Option("--force", help="replace PATH if it exists")] = False,
) -> None:
    """Copy the database to PATH while everything keeps running (SQLite's online backup;
    for PostgreSQL it says how to run pg_dump)."""
    from thinnest.store.backup import backup as backup_database

    result = backup_database(get_settings().resolved_database_url, path, overwrite=force)
    out.print(
        f"backed up {result.tables} tables, {result.bytes} bytes, to {result.path}", markup=False
    )


# --- keys -----------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option("--owner", help="owner (tenant); created if new")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="a key for web pages (the Voice Widget): it only starts sessions with the "
            "--agent(s) it names, from the --origin(s) it names",
        ),
    ] = False,
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", help="publishable: agent id or name it may start (repeatable)"),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin", help="publishable: website origin, e.g. https://example.com (repeatable)"
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(help="publishable: sessions a minute (default THINNEST_PUBLISHABLE_…)"),
    ] = None,
) -> None:
    """Create an API key; the key is printed once, as the last line."""
    if not publishable and (agent or origin or rate_limit is not None):
        raise ValidationError(
            "--agent, --origin and --rate-limit are for publishable keys: add --publishable",
            field="publishable",
        )
    with _database(get_settings()).session() as db:
        owner_row = keys_store.get_or_create_owner(db, owner)
        if publishable:
            row, plaintext = keys_store.create_publishable_key(
                db,
                owner_row,
                name=name,
                agents_allowed=agent or [],
                origins=origin or [],
                rate_limit_per_minute=rate_limit,
            )
            err.print(
                f"created publishable key {row.id} for owner {owner!r}: agents "
                f"{', '.join(row.allowed_agents)}; origins {', '.join(row.allowed_origins)}",
                markup=False,
            )
        else:
            row, plaintext = keys_store.create_key(db, owner_row, name=name)
            err.print(
                f"created key {row.id} for owner {owner!r}; store it now, it is not shown again:",
                markup=False,
            )
    out.print(plaintext)


@keys_app.command("list")
def keys_list(owner: Annotated[str | None, typer.Option(help="only this owner's")] = None) -> None:
    """List API keys (ids and prefixes, never the keys)."""
    with _database(get_settings()).session() as db:
        owner_id = keys_store.get_owner(db, owner).id if owner else None
        table = Table("id", "owner", "kind", "prefix", "name", "created", "revoked")
        for k in keys_store.list_keys(db, owner_id):
            table.add_row(
                k.id,
                escape(k.owner.name),
                k.kind,
                k.prefix + "…",
                escape(k.name),
                k.created_at.isoformat(timespec="seconds"),
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke an API key."""
    with _database(get_settings()).session() as db:
        row = keys_store.revoke_key(db, key_id)
        out.print(f"revoked {row.id}")


# --- agents ---------------------------------------------------------------------------------
def _agent_config(name: str, config_file: Path | None, fields: dict[str, Any]) -> dict[str, Any]:
    from thinnest.api.routes.agents import check_config
    from thinnest.api.schemas import AgentConfig

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read {config_file}: {exc}", field="config") from exc
    data.update({k: v for k, v in fields.items() if v is not None})
    data["name"] = name
    try:
        config = AgentConfig.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValidationError(f"{field}: {first['msg']}", field=field) from exc
    return check_config(config, get_settings())


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Argument(help="agent name (unique per owner)")],
    owner: OwnerOpt = DEFAULT_OWNER,
    instructions: Annotated[str | None, typer.Option(help="system prompt")] = None,
    greeting: Annotated[str | None, typer.Option(help="first thing the agent says")] = None,
    language: Annotated[str | None, typer.Option(help="language code, e.g. en")] = None,
    max_duration: Annotated[int | None, typer.Option(help="seconds")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with the full config")] = None,
) -> None:
    """Create an agent; prints its id as the last line."""
    data = _agent_config(
        name,
        config,
        {
            "instructions": instructions,
            "greeting": greeting,
            "language": language,
            "max_duration": max_duration,
        },
    )
    with _database(get_settings()).session() as db:
        agent = agents_store.create_agent(db, keys_store.get_or_create_owner(db, owner).id, data)
        out.print(agent.id)


@agents_app.command("list")
def agents_list(owner: OwnerOpt = DEFAULT_OWNER) -> None:
    """List an owner's agents."""
    with _database(get_settings()).session() as db:
        table = Table("id", "name", "language", "max_duration", "tools")
        for a in agents_store.list_agents(db, keys_store.get_owner(db, owner).id):
            table.add_row(
                a.id,
                escape(a.name),
                escape(str(a.config.get("language") or "")),
                str(a.config.get("max_duration", "")),
                str(len(a.config.get("tools", []))),
            )
    out.print(table)


@agents_app.command("show")
def agents_show(
    agent: Annotated[str, typer.Argument(help="agent id or name")], owner: OwnerOpt = DEFAULT_OWNER
) -> None:
    """Print an agent's config as JSON."""
    with _database(get_settings()).session() as db:
        row = agents_store.get_agent(db, keys_store.get_owner(db, owner).id, agent)
        out.print_json(data={"id": row.id, **row.config})


@agents_app.command("delete")
def agents_delete(
    agent: Annotated[str, typer.Argument(help="agent id or name")], owner: OwnerOpt = DEFAULT_OWNER
) -> None:
    """Delete an agent (its sessions are kept)."""
    with _database(get_settings()).session() as db:
        row = agents_store.get_agent(db, keys_store.get_owner(db, owner).id, agent)
        agents_store.delete_agent(db, row)
        out.print(f"deleted {row.id}")


bench_app = typer.Typer(
    help="Benchmarks: speech models, latency, concurrency, API.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


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
        typer.Option(help="turn detection provider, repeatable (default livekit, transcript)"),
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


@bench_app.command("api")
def bench_api(
    requests: Annotated[int, typer.Option(help="requests per database (at most)")] = 1000,
    seconds: Annotated[float, typer.Option(help="time limit per database")] = 30.0,
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 8,
    database: Annotated[
        list[str] | None, typer.Option(help="sqlite, postgresql (repeatable; default both)")
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

    settings = get_settings()
    options = ApiBenchOptions(
        requests=requests,
        seconds=seconds,
        concurrency=concurrency,
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
    out_file: Annotated[
        Path | None, typer.Option("--out", help="JSON file; default <data dir>/bench/")
    ] = None,
) -> None:
    """Ramp concurrent calls until latency or audio continuity degrades; CPU/memory per call."""
    from thinnest.bench.concurrency import ConcurrencyOptions, run_concurrency_bench
    from thinnest.bench.tables import concurrency_table

    settings = get_settings()
    options = ConcurrencyOptions(
        stacks=tuple(stack or ("offline", "fixed")), max_calls=max_calls, turns=turns
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


def print_error(exc: ThinnestError) -> None:
    """One line on stderr; the message is text, never rich markup (it may hold ``[a-z]``)."""
    where = f" ({escape(exc.field)})" if exc.field else ""
    err.print(f"[red]error{where}:[/] {escape(exc.message)}")


def main() -> None:
    """Entry point: a ``ThinnestError`` is one line on stderr and exit code 1, never a traceback."""
    try:
        app()
    except ThinnestError as exc:
        print_error(exc)
        sys.exit(1)
