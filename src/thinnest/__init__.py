"""Thinnest: a self-hostable, real-time voice AI agent platform on LiveKit."""

from __future__ import annotations

from thinnest.errors import ThinnestError

__all__ = ["ThinnestError", "__version__"]

__version__ = "0.1.0"
