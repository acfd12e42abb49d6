"""Request and response models of the API beyond the shared ones (:mod:`thinnest.contracts`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    UrlConstraints,
    field_validator,
)

from thinnest.contracts.agent import AgentConfig
from thinnest.contracts.session import SessionStatus
from thinnest.contracts.values import JsonObject, StrictModel


class AgentPatch(StrictModel):
    """Fields to change; the merged result is validated as a whole :class:`AgentConfig`."""

    name: str | None = None
    instructions: str | None = None
    greeting: str | None = None
    closing_message: str | None = None
    error_message: str | None = None
    language: str | None = None
    voice: str | None = None
    providers: JsonObject | None = None
    recording: StrictBool | None = None
    max_duration: StrictInt | None = None
    tools: list[JsonObject] | None = None


class AgentOut(AgentConfig):
    model_config = ConfigDict(extra="ignore")

    id: str
    created_at: datetime
    updated_at: datetime


class TurnOut(BaseModel):
    seq: int
    role: str
    text: str
    interrupted: bool
    started_at: datetime | None
    ended_at: datetime | None
    latency: dict[str, Any]


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration: float | None
    created_at: datetime


class SessionOut(BaseModel):
    id: str
    agent_id: str
    status: SessionStatus
    end_reason: str | None
    context: dict[str, Any]
    recording: bool
    max_duration: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None


class SessionDetail(SessionOut):
    error: str | None
    recording_started_at: datetime | None = Field(
        None,
        description="wall-clock time of the recording's first sample: a turn is heard in the "
        "recording at its started_at minus this",
    )
    transcript: list[TurnOut]
    tool_calls: list[ToolCallOut]


class SessionPage(BaseModel):
    data: list[SessionOut]
    total: int
    limit: int
    offset: int


class KeyOut(BaseModel):
    id: str
    name: str
    kind: Literal["secret", "publishable"]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    allowed_agents: list[str] = Field(
        default_factory=list, description="publishable keys: agent ids it may start"
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="publishable keys: origins it may be used from"
    )
    rate_limit_per_minute: int | None = Field(
        None, description="publishable keys: its own limit of POST /voice/start a minute"
    )
    max_open_sessions: int | None = Field(
        None,
        description="its own cap on sessions open at once (null: the server's default for a "
        "publishable key, no cap for a secret key)",
    )


class KeyCreate(StrictModel):
    name: str = Field("", max_length=100)
    kind: Literal["secret", "publishable"] = "secret"
    agents: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="publishable: agent ids or names it may start sessions with (required)",
    )
    origins: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="publishable: origins (scheme://host[:port]) it may be used from (required)",
    )
    rate_limit_per_minute: StrictInt | None = Field(
        None, ge=1, le=100000, description="publishable: its own limit (default: the server's)"
    )
    max_open_sessions: StrictInt | None = Field(
        None,
        ge=1,
        le=100000,
        description="sessions started with the key that may be open at once (default: the "
        "server's for a publishable key, none for a secret key); one more gets 429",
    )


class KeyCreated(KeyOut):
    key: str = Field(description="the API key itself; shown only in this response")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- webhooks --------------------------------------------------------------------------------

WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
WebhookEvent = Literal["session.started", "session.ended", "tool.failed"]
ALL_WEBHOOK_EVENTS: list[WebhookEvent] = ["session.started", "session.ended", "tool.failed"]


def _unique_events(events: list[WebhookEvent] | None) -> list[WebhookEvent] | None:
    if events is not None and len(set(events)) != len(events):
        raise ValueError("events must not repeat")
    return events


class WebhookCreate(StrictModel):
    url: WebhookUrl = Field(description="http(s) URL the events are POSTed to")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(ALL_WEBHOOK_EVENTS),
        min_length=1,
        max_length=3,
        description="the events it receives (default: all)",
    )
    description: str = Field("", max_length=200)
    enabled: StrictBool = True

    _events = field_validator("events")(_unique_events)


class WebhookPatch(StrictModel):
    url: WebhookUrl | None = None
    events: list[WebhookEvent] | None = Field(None, min_length=1, max_length=3)
    description: str | None = Field(None, max_length=200)
    enabled: StrictBool | None = None

    _events = field_validator("events")(_unique_events)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    secret_prefix: str = Field(description="the start of its signing secret, to tell it apart")
    created_at: datetime
    updated_at: datetime


class WebhookSaved(WebhookOut):
    warnings: list[str] = Field(
        default_factory=list,
        description="why deliveries to this URL would be refused (the SSRF guard)",
    )


class WebhookCreated(WebhookSaved):
    secret: str = Field(description="the signing secret (whsec_…); shown only in this response")


class DeliveryOut(BaseModel):
    id: str = Field(description="also the webhook-id header and the body's id")
    webhook_id: str
    event_type: str
    session_id: str | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when pending: the next attempt")
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None


class DeliveryDetail(DeliveryOut):
    payload: JsonObject | None = Field(description="the body sent (null before the first try)")
    response_excerpt: str | None = Field(description="the start of the receiver's last answer")
    attempt_log: list[dict[str, Any]] = Field(
        description="the last 10 attempts: at (Unix s), status_code, error, seconds"
    )


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    total: int
    limit: int
    offset: int
