"""Writes a call's turns, tool calls and ending to the store, off the event loop, with retries.

Each final turn is written as it happens, so a crash loses at most the turn in flight. A
write that fails (the database is busy or briefly gone) is retried with backoff; a call's
writes go one at a time, in the order they were made, so the ones made while the database is
away wait behind it (buffered) and land in order, each turn with its own ``seq``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.log import logger
from thinnest.store import sessions
from thinnest.store.db import Database

log = logger.getChild("engine")
T = TypeVar("T")
_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0, 4.0)


class CallStore:
    """The store as one call sees it."""

    def __init__(self, database: Database, session_id: str) -> None:
        self.database = database
        self.session_id = session_id
        # Concurrent writes would read the same max(seq) and store two turns with one seq.
        self._order = asyncio.Lock()

    async def _write(self, what: str, fn: Callable[[Session], T]) -> T | None:
        async with self._order:
            return await self._write_now(what, fn)

    async def _write_now(self, what: str, fn: Callable[[Session], T]) -> T | None:
        def run() -> T:
            with self.database.session() as db:
                return fn(db)

        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                return await asyncio.to_thread(run)
            except Exception as exc:  # any database error: retry, then give up loudly
                if delay is None:
                    log.error("session %s: could not store %s: %r", self.session_id, what, exc)
                    return None
                log.warning(
                    "session %s: storing %s failed (try %d): %r",
                    self.session_id,
                    what,
                    attempt + 1,
                    exc,
                )
                await asyncio.sleep(delay)
        return None

    async def add_turn(
        self,
        *,
        role: str,
        text: str,
        interrupted: bool,
        started_at: float | None,
        ended_at: float | None,
        latency: dict[str, float],
    ) -> None:
        await self._write(
            "turn",
            lambda db: sessions.add_turn(
                db,
                self.session_id,
                role=role,
                text=text,
                interrupted=interrupted,
                started_at=_dt(started_at),
                ended_at=_dt(ended_at),
                latency=latency,
            ),
        )

    async def add_tool_call(self, **fields: Any) -> None:
        await self._write(
            "tool call", lambda db: sessions.add_tool_call(db, self.session_id, **fields)
        )

    async def set_recording(self, path: str, *, started_at: float | None = None) -> None:
        def update(db: Session) -> None:
            row = sessions.get_session(db, self.session_id)
            row.recording_path = path
            row.recording_started_at = _dt(started_at)

        await self._write("recording path", update)

    async def finalize(
        self, *, status: SessionStatus, reason: EndReason, error: str | None = None
    ) -> None:
        await self._write(
            "ending",
            lambda db: sessions.finalize(
                db,
                sessions.get_session(db, self.session_id),
                status=status,
                reason=reason,
                error=error,
            ),
        )


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None
