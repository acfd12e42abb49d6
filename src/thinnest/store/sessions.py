"""Call sessions and what they produce: status changes, transcript turns and tool calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from thinnest.contracts.jsonvalue import clean_text
from thinnest.contracts.session import FINAL_STATUSES, OPEN_STATUSES, EndReason, SessionStatus
from thinnest.contracts.webhooks import EventType
from thinnest.errors import NotFoundError
from thinnest.store import webhooks
from thinnest.store.models import CallSession, ToolCall, TranscriptTurn, utcnow
from thinnest.store.upsert import rows_changed

#: How long after a session ends its ``session.ended`` webhook waits before its first attempt:
#: the engine's last turns (written by tasks of their own) land meanwhile.
ENDED_SETTLE = 2.0


def create_session(db: Session, **fields: Any) -> CallSession:
    row = CallSession(**fields)
    db.add(row)
    db.flush()
    return row


def count_open(db: Session, api_key_id: str) -> int:
    """Sessions started with the key that are not over yet (starting or active)."""
    stmt = (
        select(func.count())
        .select_from(CallSession)
        .where(CallSession.api_key_id == api_key_id, CallSession.status.in_(OPEN_STATUSES))
    )
    return db.scalar(stmt) or 0


def get_session(db: Session, session_id: str, owner_id: str | None = None) -> CallSession:
    """The session by id; with ``owner_id``, another owner's session is 'not found'."""
    stmt = select(CallSession).where(CallSession.id == session_id)
    if owner_id is not None:
        stmt = stmt.where(CallSession.owner_id == owner_id)
    row = db.scalars(stmt).first()
    if row is None:
        raise NotFoundError(
            f"session {session_id!r} not found", code="session_not_found", field="session_id"
        )
    return row


def list_sessions(
    db: Session,
    owner_id: str,
    *,
    agent_id: str | None = None,
    status: str | None = None,
    end_reason: str | None = None,
    text: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[CallSession], int]:
    """A page of the owner's sessions, newest first, and the total that match; ``text``
    matches sessions with a transcript line containing it (case-insensitive)."""
    where = [CallSession.owner_id == owner_id]
    if agent_id is not None:
        where.append(CallSession.agent_id == agent_id)
    if status is not None:
        where.append(CallSession.status == status)
    if end_reason is not None:
        where.append(CallSession.end_reason == end_reason)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            select(TranscriptTurn.id)
            .where(
                TranscriptTurn.session_id == CallSession.id,
                TranscriptTurn.text.ilike(pattern, escape="\\"),
            )
            .exists()
        )
    if since is not None:
        where.append(CallSession.created_at >= since)
    if until is not None:
        where.append(CallSession.created_at < until)
    total = db.scalar(select(func.count()).select_from(CallSession).where(*where)) or 0
    rows = db.scalars(
        select(CallSession)
        .where(*where)
        .order_by(CallSession.created_at.desc(), CallSession.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def mark_active(db: Session, row: CallSession) -> bool:
    """starting → active, once (a conditional UPDATE, as :func:`finalize`): never reopens a
    session closed meanwhile. Queues ``session.started`` when it changed the row."""
    if row.status != SessionStatus.STARTING:
        return False
    now = utcnow()
    db.flush()
    done = db.execute(
        update(CallSession)
        .where(CallSession.id == row.id, CallSession.status == SessionStatus.STARTING)
        .values(status=SessionStatus.ACTIVE, started_at=now)
        .execution_options(synchronize_session=False)
    )
    if not rows_changed(done):
        db.refresh(row)
        return False
    set_committed_value(row, "status", SessionStatus.ACTIVE)
    set_committed_value(row, "started_at", now)
    webhooks.enqueue(
        db,
        owner_id=row.owner_id,
        event=EventType.SESSION_STARTED,
        subject_id=row.id,
        session_id=row.id,
    )
    return True


def finalize(
    db: Session,
    row: CallSession,
    *,
    status: SessionStatus,
    reason: EndReason,
    error: str | None = None,
) -> bool:
    """Close a session once; returns False (and changes nothing) if it was already over.

    One conditional UPDATE, so of two processes closing the same session at once (two API
    processes given the same webhook, the engine and the backstop) exactly one wins, whatever
    each read before: the loser's row is refreshed to what the winner wrote. The winner queues
    the ``session.ended`` webhooks in the same transaction."""
    if row.status in FINAL_STATUSES:
        return False
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "end_reason": reason,
        "error": None if error is None else clean_text(error),
        "ended_at": now,
        "duration": None
        if row.started_at is None
        else round((now - row.started_at).total_seconds(), 3),
    }
    db.flush()  # the row's own pending changes first: the UPDATE must not be undone by them
    done = db.execute(
        update(CallSession)
        .where(CallSession.id == row.id, CallSession.status.not_in(FINAL_STATUSES))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not rows_changed(done):
        db.refresh(row)
        return False
    for name, value in values.items():
        set_committed_value(row, name, value)
    webhooks.enqueue(
        db,
        owner_id=row.owner_id,
        event=EventType.SESSION_ENDED,
        subject_id=row.id,
        session_id=row.id,
        delay=ENDED_SETTLE,
    )
    return True


def is_over(db: Session, session_id: str) -> bool:
    """Whether the session is final (an unknown one is not)."""
    status = db.scalar(select(CallSession.status).where(CallSession.id == session_id))
    return status in FINAL_STATUSES


def open_sessions(db: Session, *, older_than: datetime, limit: int = 500) -> list[str]:
    """Ids of sessions still starting or active that were created before ``older_than``."""
    rows = db.scalars(
        select(CallSession.id)
        .where(CallSession.status.in_(OPEN_STATUSES), CallSession.created_at < older_than)
        .limit(limit)
    )
    return list(rows)


def add_turn(db: Session, session_id: str, **fields: Any) -> TranscriptTurn:
    seq = db.scalar(
        select(func.coalesce(func.max(TranscriptTurn.seq), 0)).where(
            TranscriptTurn.session_id == session_id
        )
    )
    turn = TranscriptTurn(session_id=session_id, seq=(seq or 0) + 1, **_texts(fields))
    db.add(turn)
    db.flush()
    return turn


def add_tool_call(db: Session, session_id: str, **fields: Any) -> ToolCall:
    """Store a tool call; a failed one (``error`` set) queues ``tool.failed``."""
    call = ToolCall(session_id=session_id, **_texts(fields))
    db.add(call)
    db.flush()
    if fields.get("error") is not None:
        owner_id = db.scalar(select(CallSession.owner_id).where(CallSession.id == session_id))
        if owner_id is not None:
            webhooks.enqueue(
                db,
                owner_id=owner_id,
                event=EventType.TOOL_FAILED,
                subject_id=str(call.id),
                session_id=session_id,
            )
    return call


def _texts(fields: dict[str, Any]) -> dict[str, Any]:
    """What the engine writes (a transcript, a tool's answer or error) as storable text: a
    tool server may answer U+0000, which no PostgreSQL text column holds."""
    return {k: clean_text(v) if isinstance(v, str) else v for k, v in fields.items()}
