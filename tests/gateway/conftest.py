"""The gateway's end-to-end tests use the voice engine's fixtures (a real worker, speech)."""

from __future__ import annotations

from tests.engine.conftest import speak, worker  # noqa: F401
