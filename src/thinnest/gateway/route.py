"""``GET /ws/{session_id}``: the session's WebSocket (the contract's ``websocket_url``).

Checks the token and the session, reads the client's first message (``start`` or audio), then
hands the connection to a :class:`~thinnest.gateway.bridge.Bridge`. Every refusal is a close
with a documented code (see :class:`~thinnest.gateway.protocol.CloseCode`), sent after the
handshake so that every WebSocket client can read it.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from thinnest.config import Settings
from thinnest.errors import NotFoundError
from thinnest.gateway.bridge import Bridge, close_websocket
from thinnest.gateway.protocol import (
    DEFAULT_SAMPLE_RATE,
    BadMessage,
    CloseCode,
    End,
    InboundGuard,
    Limits,
    Refusal,
    Start,
    authorize,
    check_session,
    error_event,
    parse_sample_rate,
    parse_text,
    token_from,
)
from thinnest.log import logger
from thinnest.store import sessions
from thinnest.store.db import Database

router = APIRouter(tags=["gateway"])
log = logger.getChild("gateway")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_frame_bytes=settings.gateway_max_frame_bytes,
        max_messages_per_second=settings.gateway_max_messages_per_second,
        idle_timeout=settings.gateway_idle_timeout,
        audio_buffer_ms=settings.gateway_audio_buffer_ms,
    )


def _session_status(database: Database, session_id: str) -> str | None:
    with database.session() as db:
        try:
            return sessions.get_session(db, session_id).status
        except NotFoundError:
            return None


@router.websocket("/ws/{session_id}")
async def session_websocket(websocket: WebSocket, session_id: str) -> None:
    """Talk to the session's agent: PCM audio both ways, JSON events as text (see README)."""
    settings: Settings = websocket.app.state.settings
    database: Database = websocket.app.state.db
    await websocket.accept()
    try:
        outcome = await _serve(websocket, session_id, settings, database)
    except Refusal as refusal:
        outcome = refusal
    if outcome.code != CloseCode.NORMAL or outcome.reason != "client went away":
        log.info("session %s: websocket closed %d %s", session_id, outcome.code, outcome.reason)
    await close_websocket(websocket, int(outcome.code), outcome.reason)


async def _serve(
    websocket: WebSocket, session_id: str, settings: Settings, database: Database
) -> Refusal:
    token = token_from(websocket.query_params, websocket.headers)
    _key, secret = settings.livekit_credentials()
    authorize(token, api_secret=secret, session_id=session_id)
    check_session(await run_in_threadpool(_session_status, database, session_id))
    rate = DEFAULT_SAMPLE_RATE
    if "sample_rate" in websocket.query_params:
        rate = parse_sample_rate(websocket.query_params["sample_rate"])
    limits = limits_from(settings)
    guard = InboundGuard(limits)

    # The first message fixes the audio format: a start message, or audio at `rate`.
    first: bytes | None = None
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), limits.idle_timeout)
        except TimeoutError:
            return Refusal(CloseCode.IDLE, f"no message for {limits.idle_timeout:g} s")
        if message["type"] == "websocket.disconnect":
            return Refusal(CloseCode.NORMAL, "client went away")
        data: bytes | None = message.get("bytes")
        text: str = message.get("text") or ""
        guard.check(len(data) if data is not None else len(text.encode()))
        if data is not None:
            first = data
            break
        try:
            parsed = parse_text(text)
        except BadMessage as exc:
            await websocket.send_text(error_event("bad_message", str(exc)))
            continue
        if isinstance(parsed, End):
            return Refusal(CloseCode.NORMAL, "hung up")
        if isinstance(parsed, Start):
            rate = parsed.sample_rate
        break

    bridge = Bridge(
        websocket,
        session_id=session_id,
        token=token,
        livekit_url=settings.internal_livekit_ws_url,
        sample_rate=rate,
        limits=limits,
        guard=guard,
    )
    return await bridge.run(first)
