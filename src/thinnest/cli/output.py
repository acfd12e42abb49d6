"""Where the commands write: results on stdout, messages and errors on stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from thinnest.errors import ThinnestError

# Piped output keeps whole ids rather than folding them to a default 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def out_line(text: str) -> None:
    out.print(text, markup=False)


def print_error(exc: ThinnestError) -> None:
    """One line on stderr; the message is text, never rich markup (it may hold ``[a-z]``)."""
    where = f" ({escape(exc.field)})" if exc.field else ""
    err.print(f"[red]error{where}:[/] {escape(exc.message)}")
