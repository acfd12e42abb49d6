"""``thinnest call``: call an agent from the terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from thinnest.cli.output import err, out_line, print_error
from thinnest.config import get_settings
from thinnest.errors import ThinnestError, ValidationError


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
