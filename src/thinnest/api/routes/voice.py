"""``POST /voice/start``: store a session, create its room, dispatch the engine, mint a token."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from thinnest.api import publishable
from thinnest.api.deps import (
    DatabaseDep,
    LiveKitDep,
    RateLimiterDep,
    SecretOrPublishableKey,
    SettingsDep,
)
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import AgentConfig, VoiceStartRequest, VoiceStartResponse
from thinnest.config import Settings
from thinnest.engine.metadata import DispatchMetadata
from thinnest.errors import UnavailableError, ValidationError
from thinnest.livekit.rooms import LiveKitService
from thinnest.livekit.tokens import mint_participant_token
from thinnest.log import logger
from thinnest.store import agents, jsonvalue, keys, sessions, workers
from thinnest.store.db import Database
from thinnest.store.models import ApiKey

router = APIRouter(prefix="/voice", tags=["voice"], responses=ERROR_RESPONSES)
log = logger.getChild("api")

#: The identity the caller's client joins the room with.
USER_IDENTITY = "user"


@router.post("/start")
async def voice_start(
    body: VoiceStartRequest,
    request: Request,
    key: SecretOrPublishableKey,
    database: DatabaseDep,
    livekit: LiveKitDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
) -> VoiceStartResponse:
    """Start a voice session with an agent; returns a LiveKit token for the caller's client."""
    if key.kind == keys.PUBLISHABLE:
        publishable.check_origin(request, key)
        request.app.state.publishable_limits.check(key)
        await run_in_threadpool(publishable.check_start, database, key, body)
    else:
        limiter.check(key.id)
    return await start_session(body, key, database=database, livekit=livekit, settings=settings)


def _check_request(body: VoiceStartRequest, settings: Settings) -> dict[str, Any]:
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


async def start_session(
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
    context = _check_request(body, settings)

    def store() -> dict[str, Any]:
        with database.session() as db:
            if settings.require_worker:
                _check_capacity(db, settings)
            agent = agents.get_agent(db, key.owner_id, body.agent_id)
            config = agent.config
            row = sessions.create_session(
                db,
                owner_id=key.owner_id,
                agent_id=agent.id,
                agent_config=config,
                context=context,
                recording=config.get("recording", False)
                if body.recording is None
                else body.recording,
                max_duration=min(
                    body.max_duration or config.get("max_duration", settings.default_max_duration),
                    settings.max_call_duration,
                ),
            )
            return DispatchMetadata(
                session_id=row.id,
                agent_id=agent.id,
                agent=AgentConfig.model_validate(config),
                context=context,
                recording=row.recording,
                max_duration=row.max_duration,
            ).model_dump(mode="json")

    metadata = await run_in_threadpool(store)
    session_id: str = metadata["session_id"]
    try:
        await livekit.create_session_room(session_id, metadata)
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
    log.info("session %s started for agent %s", session_id, metadata["agent_id"])
    return VoiceStartResponse(
        session_id=session_id,
        token=token,
        websocket_url=settings.websocket_url(session_id),
        livekit_url=settings.resolved_public_livekit_url,
    )


def _check_capacity(db: Session, settings: Settings) -> None:
    """Refuse a call no worker could take: none alive (``no_worker``), or every live one's
    slots taken (``no_capacity``, with ``Retry-After``: a call or a no-show ends soon)."""
    live = workers.live_workers(
        db, settings.agent_name, within=3 * settings.worker_heartbeat_interval
    )
    if not live:
        raise UnavailableError(
            "no voice engine worker is running: start one with `thinnest worker` "
            "(`thinnest dev` starts one)",
            code="no_worker",
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
        sessions.finalize(db, row, status="failed", reason="livekit_unavailable", error=message)


def _activate(database: Database, session_id: str) -> None:
    with database.session() as db:
        sessions.mark_active(db, sessions.get_session(db, session_id))
