"""LiveKit's webhooks: room and participant events that let the API finalise lost sessions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from thinnest.api import backstop
from thinnest.api.deps import DatabaseDep, LiveKitDep
from thinnest.errors import AuthError

router = APIRouter(tags=["livekit"], include_in_schema=False)


@router.post("/livekit/webhook")
async def livekit_webhook(request: Request, database: DatabaseDep, livekit: LiveKitDep) -> Response:
    """Receive a signed LiveKit webhook."""
    body = (await request.body()).decode(errors="replace")
    try:
        event = livekit.webhook_receiver().receive(body, request.headers.get("authorization", ""))
    except Exception as exc:  # a bad signature, a bad body: either way not from our server
        raise AuthError("webhook signature is not valid", code="invalid_webhook") from exc
    await backstop.on_webhook(event, database, livekit)
    return Response(status_code=204)
