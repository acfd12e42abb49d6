"""Webhooks: the events an owner's endpoints receive, and the JSON body of each delivery.

Every delivery is ``{"id": "msg_…", "type": "<event>", "created_at": "<ISO time>", "data":
{…}}`` (compact UTF-8 JSON), signed as Standard Webhooks v1 (headers ``webhook-id``,
``webhook-timestamp``, ``webhook-signature``; see docs/webhooks.md). These models are the
public contract: fields may be added, never removed or renamed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class EventType(StrEnum):
    """What happened: a session started or ended, a tool call failed; ``webhook.test`` is sent
    only by ``POST /webhooks/{id}/test``."""

    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    TOOL_FAILED = "tool.failed"
    TEST = "webhook.test"


#: The events an endpoint may subscribe to (the default: all of them).
SUBSCRIBABLE = (EventType.SESSION_STARTED, EventType.SESSION_ENDED, EventType.TOOL_FAILED)


class SessionStarted(BaseModel):
    session_id: str
    agent_id: str
    status: str
    started_at: datetime | None
    context: dict[str, Any]
    recording: bool
    max_duration: int


class Turn(BaseModel):
    seq: int
    role: str
    text: str
    interrupted: bool
    started_at: datetime | None
    ended_at: datetime | None
    latency: dict[str, Any]


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration: float | None
    created_at: datetime


class StageLatency(BaseModel):
    """One latency stage over the turns that measured it, in seconds (p95: nearest rank)."""

    count: int
    mean: float
    p50: float
    p95: float
    max: float


class SessionEnded(BaseModel):
    session_id: str
    agent_id: str
    status: str
    end_reason: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    context: dict[str, Any]
    #: ``GET`` it with the owner's API key; ``null`` when the session kept no recording
    recording_url: str | None
    transcript: list[Turn]
    tool_calls: list[ToolCall]
    #: per stage (``stt``, ``llm_ttft``, ``tts_ttfb``, ``voice_to_voice``, …)
    latency: dict[str, StageLatency]
    #: true when the body would pass 1 MB: ``transcript`` (then ``tool_calls``) keeps only
    #: the latest entries; ``GET /voice/sessions/{id}`` has them all
    truncated: bool = False


class ToolFailed(BaseModel):
    session_id: str
    agent_id: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    error: str
    duration: float | None
    created_at: datetime


class WebhookTestData(BaseModel):
    webhook_id: str
    message: str


class Envelope(BaseModel):
    """A delivery's body; ``id`` is also the ``webhook-id`` header, the same on every retry."""

    id: str
    type: EventType
    created_at: datetime
    data: dict[str, Any]
