"""The API's backstop: sessions whose voice engine died are finalised, never left active.

Two paths: LiveKit's webhooks (an agent left a session's room while the session was still
active: the engine died; a room finished with the session still active; a room of an ended
session opened again), and a sweeper that finds active sessions whose room is gone (a webhook
that never came).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from datetime import timedelta

from starlette.concurrency import run_in_threadpool

from livekit import api
from thinnest.contracts.dispatch import USER_IDENTITY
from thinnest.contracts.events import TOPIC, call_ended
from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.errors import ThinnestError
from thinnest.livekit.rooms import LiveKitService
from thinnest.log import logger
from thinnest.metrics import SESSIONS_FINALISED
from thinnest.store import leases, sessions
from thinnest.store.db import Database
from thinnest.store.models import utcnow

log = logger.getChild("api")

#: How long a session may be active before the sweeper checks that its room exists.
SWEEP_GRACE = timedelta(seconds=60)

#: The lease of the process that runs the sweeper.
LEASE = "backstop"


def _finalize(
    database: Database,
    session_id: str,
    *,
    status: SessionStatus,
    reason: EndReason,
    error: str | None,
) -> tuple[bool, float]:
    with database.session() as db:
        try:
            row = sessions.get_session(db, session_id)
        except ThinnestError:
            return False, 0.0
        changed = sessions.finalize(db, row, status=status, reason=reason, error=error)
        if changed:
            SESSIONS_FINALISED.labels(reason=str(reason)).inc()
        return changed, row.duration or 0.0


async def engine_lost(database: Database, livekit: LiveKitService, room: str, why: str) -> bool:
    """Finalise an active session as ``error``, tell the caller, close the room."""
    changed, duration = await run_in_threadpool(
        _finalize,
        database,
        room,
        status=SessionStatus.ERROR,
        reason=EndReason.ERROR,
        error=why,
    )
    if not changed:
        return False
    log.warning("session %s finalised by the backstop: %s", room, why)
    try:
        await livekit.send_data(room, call_ended(duration, EndReason.ERROR).encode(), topic=TOPIC)
        await livekit.delete_room(room)
    except ThinnestError:
        pass  # the room is gone already, or LiveKit is: the session is final either way
    return True


async def on_webhook(event: api.WebhookEvent, database: Database, livekit: LiveKitService) -> None:
    room = event.room.name
    if not room.startswith("session_"):
        return
    if (
        event.event == "participant_left"
        and event.participant.kind == api.ParticipantInfo.Kind.AGENT
    ):
        await engine_lost(
            database, livekit, room, "the voice engine left the room before the call ended"
        )
    elif (
        event.event == "participant_left"
        and event.participant.identity == USER_IDENTITY
        and event.participant.disconnect_reason != api.DisconnectReason.DUPLICATE_IDENTITY
    ):
        # (Replaced by a new connection of the caller's, a reconnect: the caller is still in.)
        await caller_left(database, livekit, room)
    elif event.event in ("room_started", "participant_joined") and await run_in_threadpool(
        _is_over, database, room
    ):
        # A LiveKit that creates rooms on join (`room.auto_create`, on by default): an ended
        # session's token, valid for minutes more, opened its room again. Close it.
        log.warning("session %s is over: its room was opened again and is closed", room)
        try:
            await livekit.delete_room(room)
        except ThinnestError:
            pass  # LiveKit is unreachable: the room empties out by itself
    elif event.event == "room_finished":
        await run_in_threadpool(
            _finalize,
            database,
            room,
            status=SessionStatus.ENDED,
            reason=EndReason.ROOM_CLOSED,
            error=None,
        )


async def caller_left(database: Database, livekit: LiveKitService, room: str) -> bool:
    """The caller left a room no voice engine is in yet (it hung up while the engine was
    starting): the session ends as ``user_left``. With an engine in the room, the engine
    saw it leave and ends the call itself."""
    if await run_in_threadpool(_is_over, database, room):
        return False
    try:
        participants = await livekit.list_participants(room)
    except ThinnestError:
        return False  # LiveKit unreachable: the sweeper finalises the session later
    if any(
        p.kind == api.ParticipantInfo.Kind.AGENT or p.identity == USER_IDENTITY
        for p in participants
    ):
        return False  # the engine ends the call itself; or the caller is back (a reconnect)
    changed, _ = await run_in_threadpool(
        _finalize,
        database,
        room,
        status=SessionStatus.ENDED,
        reason=EndReason.USER_LEFT,
        error=None,
    )
    if changed:
        log.info("session %s: the caller left before the voice engine joined", room)
        try:
            await livekit.delete_room(room)  # the engine's job, if it comes, ends with it
        except ThinnestError:
            pass
    return changed


def _is_over(database: Database, session_id: str) -> bool:
    with database.session() as db:
        return sessions.is_over(db, session_id)


def _stale_sessions(database: Database) -> list[str]:
    with database.session() as db:
        return sessions.open_sessions(db, older_than=utcnow() - SWEEP_GRACE)


async def sweep_once(database: Database, livekit: LiveKitService) -> int:
    """Finalise active sessions whose room no longer exists; returns how many."""
    stale = await run_in_threadpool(_stale_sessions, database)
    if not stale:
        return 0
    alive = await livekit.existing_rooms(stale)
    gone = [s for s in stale if s not in alive]
    for session_id in gone:
        await engine_lost(database, livekit, session_id, "the session's room was gone")
    return len(gone)


def sweeper_id() -> str:
    """This process's name as a lease holder: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _lead(database: Database, holder: str, ttl: float) -> bool:
    with database.writing() as db:
        return leases.acquire(db, LEASE, holder, ttl=ttl, now=time.time())


def _step_down(database: Database, holder: str) -> None:
    with database.writing() as db:
        leases.release(db, LEASE, holder)


async def sweep_if_leading(
    database: Database, livekit: LiveKitService, holder: str, *, ttl: float
) -> int | None:
    """One round of the sweeper, if ``holder`` has (or takes) the lease for ``ttl`` more
    seconds: how many sessions it finalised; None when another process sweeps."""
    if not await run_in_threadpool(_lead, database, holder, ttl):
        return None
    return await sweep_once(database, livekit)


async def sweeper(database: Database, livekit: LiveKitService, interval: float) -> None:
    """Sweep every ``interval`` seconds while this process holds the lease; give it up on
    the way out, so another process takes the sweeping over at its next round."""
    holder = sweeper_id()
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await sweep_if_leading(database, livekit, holder, ttl=3 * interval)
            except ThinnestError as exc:
                log.info("sweeper skipped a round: %s", exc.message)
            except Exception:
                log.exception("sweeper round failed")
    finally:
        try:
            await asyncio.shield(run_in_threadpool(_step_down, database, holder))
        except Exception:  # the database is gone: the lease runs out by itself
            log.info("sweeper: the lease was not given up; it runs out in %.0f s", 3 * interval)
