"""The package logger and log setup; subpackages log to ``thinnest.<pkg>``."""

from __future__ import annotations

import logging

logger = logging.getLogger("thinnest")


def configure(level: str = "INFO") -> None:
    """Send Thinnest's logs (and uvicorn's) to stderr in one plain format."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
