"""``POST /voice/start``: the request and the answer of the product's one public call."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, StrictInt

from thinnest.contracts.values import JsonObject, StrictModel


class VoiceStartRequest(StrictModel):
    agent_id: str = Field(min_length=1, max_length=100, description="agent id (or name)")
    context: JsonObject | None = Field(
        None,
        description="user/session context for the agent's prompt (as data, never as "
        "instructions) and tools",
    )
    recording: StrictBool | None = Field(None, description="default: the agent's setting")
    max_duration: StrictInt | None = Field(
        None, gt=0, description="seconds; default: the agent's; bounded by the server maximum"
    )


class VoiceStartResponse(BaseModel):
    session_id: str
    token: str
    websocket_url: str
    livekit_url: str
