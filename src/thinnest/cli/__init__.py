"""The ``thinnest`` command: thin typer commands over the same functions the API uses.

One module per job: ``serve`` (the processes: serve, worker, dev), ``call``, ``say`` (text to a
WAV), ``admin`` (the database: keys, agents, backup), ``bench`` (the benchmarks); ``output`` is
where they write.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from thinnest import __version__
from thinnest.cli.admin import agents_app, backup, keys_app
from thinnest.cli.bench import bench_app
from thinnest.cli.call import call
from thinnest.cli.output import out, print_error
from thinnest.cli.say import say
from thinnest.cli.serve import cluster, dev, models, serve, worker
from thinnest.errors import ThinnestError

__all__ = ["app", "main"]

app = typer.Typer(
    help="Thinnest: real-time voice AI agents on LiveKit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


# `thinnest --help` lists the commands in this order.
for command in (serve, worker, models, call, say, dev, cluster, backup):
    app.command()(command)
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")
app.add_typer(bench_app, name="bench")


def main() -> None:
    """Entry point: a ``ThinnestError`` is one line on stderr and exit code 1, never a traceback."""
    try:
        app()
    except ThinnestError as exc:
        print_error(exc)
        sys.exit(1)
