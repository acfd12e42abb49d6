"""``python -m thinnest`` runs the CLI."""

from __future__ import annotations

from thinnest.cli import main

main()
