"""The processes: ``thinnest serve`` (API and gateway), ``worker`` (voice engine), ``models``
(the shared models) and ``dev`` (all of them on loopback, with a LiveKit server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from thinnest.bootstrap import DevIdentity
from thinnest.cli.output import out
from thinnest.config import Settings, get_settings
from thinnest.log import configure


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (THINNEST_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (THINNEST_API_PORT)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, max=64, help="API processes on the port (THINNEST_API_PROCESSES)"
        ),
    ] = None,
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
    if workers:
        updates["api_processes"] = workers
    settings = settings.model_copy(update=updates)
    configure(settings.log_level)
    settings.livekit_credentials()  # fail early with a clear message
    common: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if settings.api_processes == 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Each process builds its app from the environment: the options above go there too. The
    # schema is migrated here, once, not by every process at once.
    os.environ.update(
        THINNEST_API_HOST=settings.api_host,
        THINNEST_API_PORT=str(settings.api_port),
        THINNEST_API_PROCESSES=str(settings.api_processes),
    )
    from thinnest.store.db import Database

    database = Database(settings.resolved_database_url)
    try:
        database.migrate()
    finally:
        database.close()
    from thinnest.metrics import multiprocess_dir

    # The processes count in shared files: any of them answers /metrics for all.
    with multiprocess_dir("thinnest-api-metrics-"):
        uvicorn.run(
            "thinnest.api.main:app_from_environment",
            factory=True,
            workers=settings.api_processes,
            **common,
        )


def worker() -> None:
    """Run a voice engine worker (scale out by running more)."""
    from thinnest.engine.worker import run_worker

    settings = get_settings()
    configure(settings.log_level)
    run_worker(settings)


def models(
    host: Annotated[str | None, typer.Option(help="bind address (THINNEST_MODELS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (THINNEST_MODELS_PORT)")] = None,
) -> None:
    """Run the shared model services (LLM, speech-to-text, text-to-speech) that every call on
    this machine, or on workers with THINNEST_MODELS_URL, uses."""
    from thinnest.modelsvc.service import run_models

    settings = get_settings()
    updates: dict[str, Any] = {}
    if host:
        updates["models_host"] = host
    if port:
        updates["models_port"] = port
    settings = settings.model_copy(update=updates)
    configure(settings.log_level)
    run_models(settings)


def _print_dev_banner(settings: Settings, ident: DevIdentity) -> None:
    base = settings.resolved_public_base_url
    out.print("\n[bold green]Thinnest dev stack is running[/] (Ctrl-C stops everything)\n")
    if settings.resolved_web_demo:
        out.print(f"  [bold]Demo page     {base}/demo[/]   (open it, press Call, talk)")
    out.print(f"  API           {base}   (OpenAPI docs: {base}/docs)")
    if settings.console_enabled:
        out.print(f"  Console       {base}/console   (sign in with the key printed below)")
    out.print(f"  LiveKit       {settings.resolved_public_livekit_url}")
    out.print(f"  models        {settings.models_url}   (LLM, STT, TTS shared by every call)")
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


def dev() -> None:
    """Start everything on loopback: LiveKit server, API, voice engine; print a key and agent."""
    from thinnest.devstack import DevStack

    settings = get_settings()
    configure(settings.log_level)
    stack = DevStack(settings)
    stack.on_ready = lambda ident: _print_dev_banner(stack.settings, ident)
    raise typer.Exit(stack.run())


def cluster(
    workdir: Annotated[
        Path, typer.Option(help="each host's logs and data under WORKDIR/<host>")
    ] = Path(".thinnest/cluster"),
    subnet: Annotated[
        str, typer.Option(help="the hosts' network, private to this machine")
    ] = "198.18.20.0/24",
    worker_hosts: Annotated[int, typer.Option(min=1, max=8, help="voice engine hosts")] = 2,
    worker_max_jobs: Annotated[int, typer.Option(min=1, help="calls each worker host takes")] = 2,
) -> None:
    """Start a multi-host Thinnest on this machine (root): Redis, PostgreSQL, two LiveKit nodes,
    a load balancer (haproxy), the model services, two API hosts and worker hosts, each in a
    network namespace of its own.
    Ctrl-C stops everything and removes the namespaces."""
    import signal
    import threading

    from thinnest.cluster.topology import Cluster, ClusterOptions

    settings = get_settings()
    configure(settings.log_level)
    options = ClusterOptions(
        workdir=workdir.resolve(),
        subnet=subnet,
        worker_hosts=worker_hosts,
        worker_max_jobs=worker_max_jobs,
    )
    running = Cluster(options)
    stop = threading.Event()
    # Both set here: a process started in the background inherits SIGINT ignored, and Python
    # then raises no KeyboardInterrupt for it.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    out.print("starting the cluster (a minute or two) …")
    running.start()
    try:
        ident = running.identity
        assert ident is not None
        out.print("\n[bold green]Thinnest cluster is running[/] (Ctrl-C stops everything)\n")
        for name, role in running.roles.items():
            pid = role.process.pid if role.process is not None else "-"
            out.print(
                f"  {name:<8} {role.host.address:<15} pid {pid:<8} log {escape(str(role.log))}"
            )
        out.print(f"\n  API           {running.lb_api_url}  (load balancer)")
        out.print(f"  LiveKit       {running.lb_livekit_url}  (load balancer)")
        out.print(f"  agent id      {ident.agent_id}")
        out.print(f"  API key       {ident.api_key}\n")
        out.print(
            f"  curl -s -X POST {running.lb_api_url}/voice/start -H 'Authorization: Bearer "
            f"{ident.api_key}' -H 'Content-Type: application/json' "
            f'-d \'{{"agent_id": "{ident.agent_id}"}}\'\n'
        )
        while not stop.wait(1.0):
            pass
    finally:
        out.print("stopping the cluster …")
        running.stop()
