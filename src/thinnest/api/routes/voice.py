"""``POST /voice/start``: the checks of the caller's key, then the start (see
:func:`thinnest.services.sessions.start`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from thinnest.api import publishable
from thinnest.api.deps import (
    DatabaseDep,
    LiveKitDep,
    RateLimitsDep,
    SecretOrPublishableKey,
    SettingsDep,
)
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.contracts.voice import VoiceStartRequest, VoiceStartResponse
from thinnest.services import sessions
from thinnest.store import keys

router = APIRouter(prefix="/voice", tags=["voice"], responses=ERROR_RESPONSES)


@router.post("/start")
async def voice_start(
    body: VoiceStartRequest,
    request: Request,
    key: SecretOrPublishableKey,
    database: DatabaseDep,
    livekit: LiveKitDep,
    limits: RateLimitsDep,
    settings: SettingsDep,
) -> VoiceStartResponse:
    """Start a voice session with an agent; returns a LiveKit token for the caller's client."""
    if key.kind == keys.PUBLISHABLE:
        publishable.check_origin(request, key)
        await limits.check(
            key.id, key.rate_limit_per_minute or settings.publishable_rate_limit_per_minute
        )
        await run_in_threadpool(publishable.check_start, database, key, body, settings)
    else:
        await limits.check(key.id, settings.rate_limit_per_minute)
    return await sessions.start(body, key, database=database, livekit=livekit, settings=settings)
