"""Sessions of the caller's owner: list, read (with transcript), end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import CurrentKey, DatabaseDep, DbSession, LiveKitDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import SessionDetail, SessionOut, SessionPage, ToolCallOut, TurnOut
from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.errors import NotFoundError
from thinnest.services import sessions as sessions_service
from thinnest.store import sessions
from thinnest.store.db import Database
from thinnest.store.models import CallSession

router = APIRouter(prefix="/voice/sessions", tags=["sessions"], responses=ERROR_RESPONSES)


def _iso_only(value: object) -> object:
    """A bare number is not the documented ``date-time`` (pydantic would read it as epoch)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date-time")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]


def session_out(row: CallSession) -> SessionOut:
    return SessionOut.model_validate(row, from_attributes=True)


def session_detail(row: CallSession) -> SessionDetail:
    return SessionDetail(
        **session_out(row).model_dump(),
        error=row.error,
        recording_started_at=row.recording_started_at,
        transcript=[TurnOut.model_validate(t, from_attributes=True) for t in row.turns],
        tool_calls=[ToolCallOut.model_validate(c, from_attributes=True) for c in row.tool_calls],
    )


@router.get(
    "/{session_id}/recording",
    response_class=FileResponse,
    responses={200: {"content": {"audio/ogg": {}}}},
)
def get_recording(session_id: str, key: CurrentKey, db: DbSession) -> FileResponse:
    """Download the session's recording (Ogg/Opus, stereo: user left, agent right)."""
    row = sessions.get_session(db, session_id, key.owner_id)
    if not row.recording_path or not Path(row.recording_path).is_file():
        raise NotFoundError(
            f"session {session_id!r} has no recording",
            code="recording_not_found",
            field="session_id",
        )
    return FileResponse(row.recording_path, media_type="audio/ogg", filename=f"{session_id}.ogg")


@router.get("")
def list_sessions(
    key: CurrentKey,
    db: DbSession,
    agent_id: str | None = None,
    status: SessionStatus | None = None,
    end_reason: EndReason | None = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="only sessions whose transcript contains this text"),
    ] = None,
    since: IsoDatetime | None = None,
    until: IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # beyond it: 422, not a DB overflow
) -> SessionPage:
    """List the caller's sessions, newest first."""
    rows, total = sessions.list_sessions(
        db,
        key.owner_id,
        agent_id=agent_id,
        status=status,
        end_reason=end_reason,
        text=q.strip() if q else None,
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
    await sessions_service.end(session_id, key.owner_id, database=database, livekit=livekit)
    return await run_in_threadpool(read_detail, database, session_id, key.owner_id)


def read_detail(database: Database, session_id: str, owner_id: str) -> SessionDetail:
    with database.session() as db:
        return session_detail(sessions.get_session(db, session_id, owner_id))
