"""Sessions of the caller's owner: list, read (with transcript), end."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import CurrentKey, DatabaseDep, DbSession, LiveKitDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import SessionDetail, SessionOut, SessionPage, ToolCallOut, TurnOut
from thinnest.store import sessions
from thinnest.store.models import CallSession

router = APIRouter(prefix="/voice/sessions", tags=["sessions"], responses=ERROR_RESPONSES)

Status = Literal["starting", "active", "ended", "error", "failed"]


def session_out(row: CallSession) -> SessionOut:
    return SessionOut.model_validate(row, from_attributes=True)


def session_detail(row: CallSession) -> SessionDetail:
    return SessionDetail(
        **session_out(row).model_dump(),
        error=row.error,
        transcript=[TurnOut.model_validate(t, from_attributes=True) for t in row.turns],
        tool_calls=[ToolCallOut.model_validate(c, from_attributes=True) for c in row.tool_calls],
    )


@router.get("")
def list_sessions(
    key: CurrentKey,
    db: DbSession,
    agent_id: str | None = None,
    status: Status | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SessionPage:
    """List the caller's sessions, newest first."""
    rows, total = sessions.list_sessions(
        db,
        key.owner_id,
        agent_id=agent_id,
        status=status,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return SessionPage(data=[session_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{session_id}")
def get_session(session_id: str, key: CurrentKey, db: DbSession) -> SessionDetail:
    """Read one session with its transcript and tool calls."""
    return session_detail(sessions.get_session(db, session_id, key.owner_id))


@router.post("/{session_id}/end")
async def end_session(
    session_id: str, key: CurrentKey, database: DatabaseDep, livekit: LiveKitDep
) -> SessionDetail:
    """End a session: close its room and finalise it (idempotent)."""

    def load() -> CallSession:
        with database.session() as db:
            return sessions.get_session(db, session_id, key.owner_id)

    row = await run_in_threadpool(load)
    if row.status not in sessions.FINAL_STATUSES:
        await livekit.delete_room(session_id)

    def finish() -> SessionDetail:
        with database.session() as db:
            current = sessions.get_session(db, session_id, key.owner_id)
            sessions.finalize(db, current, status="ended", reason="ended_by_api")
            db.flush()
            return session_detail(current)

    return await run_in_threadpool(finish)
