"""Request and response models of the API beyond the shared ones (:mod:`thinnest.contracts`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

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
