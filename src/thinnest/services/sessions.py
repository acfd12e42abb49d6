"""Starting and ending a session: the whole of ``POST /voice/start`` and of an end, shared by
the API's routes, the demo page and the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from livekit import api
from thinnest.config import Settings
from thinnest.contracts import jsonvalue
from thinnest.contracts.dispatch import USER_IDENTITY, DispatchMetadata
from thinnest.contracts.events import CONTROL_TOPIC, end_control
from thinnest.contracts.session import FINAL_STATUSES, EndReason, SessionStatus
from thinnest.contracts.voice import VoiceStartRequest, VoiceStartResponse
from thinnest.errors import RateLimitError, UnavailableError, ValidationError
from thinnest.livekit.rooms import LiveKitService
from thinnest.livekit.tokens import mint_participant_token
from thinnest.log import logger
from thinnest.metrics import SESSIONS_FINALISED
from thinnest.store import agents, keys, sessions, workers
from thinnest.store.db import Database
from thinnest.store.models import ApiKey

log = logger.getChild("api")

#: How long an end waits for the voice engine to say goodbye and send ``call_ended``.
ENGINE_END_WAIT = 5.0


def checked_context(body: VoiceStartRequest, settings: Settings) -> dict[str, Any]:
    """The request's context, within the server's bounds (size, depth, duration)."""
    context = body.context or {}
    size = len(json.dumps(context, separators=(",", ":")).encode())
    if size > settings.max_context_bytes:
        raise ValidationError(
            f"context is {size} bytes of JSON; the limit is {settings.max_context_bytes}",
            field="context",
        )
    if (levels := jsonvalue.depth(context)) > settings.max_context_depth:
        raise ValidationError(
            f"context is nested {levels} levels deep; the limit is {settings.max_context_depth}",
            field="context",
        )
    if body.max_duration is not None and body.max_duration > settings.max_call_duration:
        raise ValidationError(
            f"max_duration must be at most {settings.max_call_duration} seconds",
            field="max_duration",
        )
    return context


async def start(
    body: VoiceStartRequest,
    key: ApiKey,
    *,
    database: Database,
    livekit: LiveKitService,
    settings: Settings,
) -> VoiceStartResponse:
    """The whole start: validate, store, create room + dispatch, mint the token.

    A LiveKit failure finalises the stored session as ``failed`` (never left ``active``) and
    surfaces as :class:`UnavailableError` (503).
    """
    context = checked_context(body, settings)

    def store() -> DispatchMetadata:
        with database.writing() as db:
            # One transaction counts and inserts: the key's row is locked first, so two starts
            # with one key cannot both see room under its cap (nor, with the workers' rows
            # locked too, both take a worker's last slot).
            keys.lock(db, key.id)
            check_open_sessions(db, key, settings)
            if settings.require_worker:
                check_capacity(db, settings)
            agent = agents.get_agent(db, key.owner_id, body.agent_id)
            config = agents.config_of(agent)
            max_duration = body.max_duration or config.max_duration
            row = sessions.create_session(
                db,
                owner_id=key.owner_id,
                agent_id=agent.id,
                api_key_id=key.id,
                agent_config=agent.config,
                context=context,
                recording=config.recording if body.recording is None else body.recording,
                max_duration=min(
                    max_duration or settings.default_max_duration, settings.max_call_duration
                ),
            )
            return DispatchMetadata(
                session_id=row.id,
                agent_id=agent.id,
                agent=config,
                context=context,
                recording=row.recording,
                max_duration=row.max_duration,
            )

    metadata = await run_in_threadpool(store)
    session_id = metadata.session_id
    try:
        await livekit.create_session_room(session_id, metadata.model_dump(mode="json"))
    except UnavailableError as exc:
        await run_in_threadpool(_fail, database, session_id, exc.message)
        try:
            await livekit.delete_room(session_id)
        except UnavailableError:
            pass  # the room expires by itself (empty_timeout)
        raise

    api_key, api_secret = settings.livekit_credentials()
    token = mint_participant_token(
        api_key=api_key,
        api_secret=api_secret,
        room=session_id,
        identity=USER_IDENTITY,
        name=USER_IDENTITY,
    )
    await run_in_threadpool(_activate, database, session_id)
    log.info("session %s started for agent %s", session_id, metadata.agent_id)
    return VoiceStartResponse(
        session_id=session_id,
        token=token,
        websocket_url=settings.websocket_url(session_id),
        livekit_url=settings.resolved_public_livekit_url,
    )


def check_open_sessions(db: Session, key: ApiKey, settings: Settings) -> None:
    """Refuse a start that would put more of the key's sessions open at once than its cap
    (``429 too_many_sessions``, with ``Retry-After``): a copied publishable key could
    otherwise hold every worker slot with calls nobody joins. Call with the key locked."""
    cap = keys.max_open_sessions(key, settings.publishable_max_open_sessions)
    if cap is None:
        return
    if (open_now := sessions.count_open(db, key.id)) >= cap:
        raise RateLimitError(
            f"this API key has {open_now} sessions open and may have at most {cap} at once; "
            "try again when one has ended",
            code="too_many_sessions",
            field="max_open_sessions",
            retry_after=settings.no_capacity_retry_after,
        )


def check_capacity(db: Session, settings: Settings) -> None:
    """Refuse a call no worker could take: none alive (``no_worker``), or every live one's
    slots taken (``no_capacity``, with ``Retry-After``: a call or a no-show ends soon).
    The live workers' rows stay locked until the start commits."""
    live = workers.live_workers(
        db, settings.agent_name, within=3 * settings.worker_heartbeat_interval, lock=True
    )
    if not live:
        raise UnavailableError(
            "no voice engine worker is running: start one with `thinnest worker` "
            "(`thinnest dev` starts one)",
            code="no_worker",
        )
    if not any(workers.models_usable(w) for w in live):
        raise UnavailableError(
            "the model services of every voice engine worker are down "
            f"({live[0].models_status}); calls start again once they are back",
            code="models_unavailable",
            retry_after=settings.no_capacity_retry_after,
        )
    if workers.free_slots(live, db) <= 0:
        raise UnavailableError(
            f"every voice engine worker is busy ({sum(w.max_jobs for w in live)} calls on "
            f"{len(live)} worker(s)); try again shortly",
            code="no_capacity",
            retry_after=settings.no_capacity_retry_after,
        )


def _fail(database: Database, session_id: str, message: str) -> None:
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        if sessions.finalize(
            db,
            row,
            status=SessionStatus.FAILED,
            reason=EndReason.LIVEKIT_UNAVAILABLE,
            error=message,
        ):
            SESSIONS_FINALISED.labels(reason=str(EndReason.LIVEKIT_UNAVAILABLE)).inc()


def _activate(database: Database, session_id: str) -> None:
    with database.session() as db:
        sessions.mark_active(db, sessions.get_session(db, session_id))


async def end(
    session_id: str,
    owner_id: str,
    *,
    database: Database,
    livekit: LiveKitService,
    reason: EndReason = EndReason.ENDED_BY_API,
) -> None:
    """End one of the owner's sessions with ``reason`` (idempotent): ``ended_by_api`` for the
    API's end, ``user_left`` where the caller hung up through a server (the demo's hang-up).
    The engine in the room, if any, is asked to end the call so the caller gets its
    ``call_ended``; then the session is final and its room closed."""

    def is_over() -> bool:
        with database.session() as db:
            return sessions.get_session(db, session_id, owner_id).status in FINAL_STATUSES

    def finish() -> None:
        with database.session() as db:
            current = sessions.get_session(db, session_id, owner_id)
            if sessions.finalize(db, current, status=SessionStatus.ENDED, reason=reason):
                SESSIONS_FINALISED.labels(reason=str(reason)).inc()

    if await run_in_threadpool(is_over):
        return
    await _ask_engine_to_end(session_id, livekit, is_over, reason)
    # Finalise before closing the room: its room_finished webhook must find the session over.
    await run_in_threadpool(finish)
    await livekit.delete_room(session_id)


async def _ask_engine_to_end(
    session_id: str, livekit: LiveKitService, is_over: Callable[[], bool], reason: EndReason
) -> None:
    """Ask the engine in the room to end the call (it sends ``call_ended``), briefly wait."""
    participants = await livekit.list_participants(session_id)
    if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants):
        return
    await livekit.send_data(session_id, end_control(reason), topic=CONTROL_TOPIC)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENGINE_END_WAIT
    while loop.time() < deadline:
        if await run_in_threadpool(is_over):
            break
        await asyncio.sleep(0.1)
    # The engine sends ``call_ended`` and then leaves; a room deleted before it left can drop
    # that message on its way to the caller (seen: `thinnest call` got "room closed" instead).
    while loop.time() < deadline:
        try:
            participants = await livekit.list_participants(session_id)
        except UnavailableError:
            return  # the room is gone already (or LiveKit is): nothing left to wait for
        if not any(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants):
            return
        await asyncio.sleep(0.1)
