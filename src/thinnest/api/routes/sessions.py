"""Sessions of the caller's owner: list, read (with transcript), end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from livekit import api
from thinnest.api.deps import CurrentKey, DatabaseDep, DbSession, LiveKitDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import SessionDetail, SessionOut, SessionPage, ToolCallOut, TurnOut
from thinnest.engine.protocol import CONTROL_TOPIC
from thinnest.errors import NotFoundError, UnavailableError
from thinnest.livekit.rooms import LiveKitService
from thinnest.store import sessions
from thinnest.store.db import Database
from thinnest.store.models import CallSession

router = APIRouter(prefix="/voice/sessions", tags=["sessions"], responses=ERROR_RESPONSES)

Status = Literal["starting", "active", "ended", "error", "failed"]


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
        transcript=[TurnOut.model_validate(t, from_attributes=True) for t in row.turns],
        tool_calls=[ToolCallOut.model_validate(c, from_attributes=True) for c in row.tool_calls],
    )


#: How long the API waits for the voice engine to say goodbye and send ``call_ended``.
ENGINE_END_WAIT = 5.0


async def _ask_engine_to_end(
    session_id: str, livekit: LiveKitService, load: Callable[[], CallSession], reason: str
) -> None:
    """Ask the engine in the room to end the call (it sends ``call_ended``), briefly wait."""
    participants = await livekit.list_participants(session_id)
    if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants):
        return
    await livekit.send_data(
        session_id,
        json.dumps({"type": "end", "reason": reason}).encode(),
        topic=CONTROL_TOPIC,
    )
    deadline = asyncio.get_running_loop().time() + ENGINE_END_WAIT
    while asyncio.get_running_loop().time() < deadline:
        if (await run_in_threadpool(load)).status in sessions.FINAL_STATUSES:
            break
        await asyncio.sleep(0.1)
    # The engine sends ``call_ended`` and then leaves; a room deleted before it left can drop
    # that message on its way to the caller (seen: `thinnest call` got "room closed" instead).
    while asyncio.get_running_loop().time() < deadline:
        try:
            participants = await livekit.list_participants(session_id)
        except UnavailableError:
            return  # the room is gone already (or LiveKit is): nothing left to wait for
        if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants):
            return
        await asyncio.sleep(0.1)


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
    status: Status | None = None,
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
    return await end(session_id, key.owner_id, database, livekit)


async def end(
    session_id: str,
    owner_id: str,
    database: Database,
    livekit: LiveKitService,
    *,
    reason: str = "ended_by_api",
) -> SessionDetail:
    """End one of the owner's sessions with ``reason``: ``ended_by_api`` for the API's end,
    ``user_left`` where the caller hung up through a server (the demo page's hang-up)."""

    def load() -> CallSession:
        with database.session() as db:
            return sessions.get_session(db, session_id, owner_id)

    def finish() -> SessionDetail:
        with database.session() as db:
            current = sessions.get_session(db, session_id, owner_id)
            sessions.finalize(db, current, status="ended", reason=reason)
            db.flush()
            return session_detail(current)

    row = await run_in_threadpool(load)
    if row.status in sessions.FINAL_STATUSES:
        return await run_in_threadpool(finish)
    await _ask_engine_to_end(session_id, livekit, load, reason)
    # Finalise before closing the room: its room_finished webhook must find the session over.
    detail = await run_in_threadpool(finish)
    await livekit.delete_room(session_id)
    return detail
