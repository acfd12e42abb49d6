"""SQLAlchemy models: owners (tenants), API keys, agents, sessions, transcript turns, tool calls."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from thinnest.contracts.session import SessionStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random, URL-safe, prefixed identifier such as ``session_3fA…``."""
    return f"{prefix}_{secrets.token_hex(12)}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("owner"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A key is shown once; only its SHA-256 is stored. ``prefix`` identifies it in lists.

    ``kind`` is ``secret`` (server-side, full access to its owner's resources) or
    ``publishable`` (safe in a web page: it only starts sessions with ``allowed_agents``,
    from pages on ``allowed_origins``, at most ``rate_limit_per_minute`` a minute, at most
    ``max_open_sessions`` open at once).
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(20), default="secret")
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: agent ids a publishable key may start sessions with
    allowed_agents: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: ``scheme://host[:port]`` origins a publishable key may be used from
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: a publishable key's own limit; default ``Settings.publishable_rate_limit_per_minute``
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    #: most sessions started with this key that may be open (starting or active) at once;
    #: default ``Settings.publishable_max_open_sessions`` for a publishable key, none for a
    #: secret key
    max_open_sessions: Mapped[int | None] = mapped_column(Integer, default=None)

    owner: Mapped[Owner] = relationship(lazy="joined")


class Agent(Base):
    """An agent's settings live in ``config`` (an
    :class:`~thinnest.contracts.agent.AgentConfig`; ``store.agents.config_of`` reads it)."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_owner_name", "owner_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("agent"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallSession(Base):
    """One call. ``agent_config`` is the snapshot the voice engine was dispatched with."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_owner_created", "owner_id", "created_at"),
        Index("ix_sessions_api_key_status", "api_key_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("session"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    # Not a foreign key: a session outlives its agent; the snapshot keeps what it ran with.
    agent_id: Mapped[str] = mapped_column(String(40), index=True)
    agent_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: the key that started it (not a foreign key: a session outlives its key); ``None`` for
    #: sessions stored before keys were recorded (revision 0005)
    api_key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recording: Mapped[bool] = mapped_column(Boolean, default=False)
    max_duration: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=SessionStatus.STARTING, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    recording_path: Mapped[str | None] = mapped_column(String(500), default=None)
    #: wall-clock time of the recording's first sample (a turn's offset in the recording is
    #: its ``started_at`` minus this)
    recording_started_at: Mapped[datetime | None] = mapped_column(default=None)

    turns: Mapped[list[TranscriptTurn]] = relationship(
        order_by="TranscriptTurn.seq", cascade="all, delete-orphan", lazy="selectin"
    )
    tool_calls: Mapped[list[ToolCall]] = relationship(
        order_by="ToolCall.created_at", cascade="all, delete-orphan", lazy="selectin"
    )


class TranscriptTurn(Base):
    __tablename__ = "transcript_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    #: latency figures in seconds: end_of_turn_delay, stt, llm_ttft, tts_ttfb, voice_to_voice
    latency: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A sign-in to the operator console. The browser holds a random token in an HttpOnly
    cookie; only its SHA-256 is stored. It lasts until ``expires_at``, a sign-out
    (``revoked_at``) or the revocation of the key it was opened with."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("console"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    #: sent back by the page in ``X-CSRF-Token`` on every request that changes something
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    key: Mapped[ApiKey] = relationship(lazy="joined")


class Worker(Base):
    """A voice engine worker's heartbeat: the API refuses calls when none is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_name: Mapped[str] = mapped_column(String(100), index=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    active_jobs: Mapped[int] = mapped_column(Integer, default=0)
    max_jobs: Mapped[int] = mapped_column(Integer, default=0)
    #: the sessions (rooms) of the calls it holds, as of ``last_seen``
    session_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: its model services: "" (none, models in process), "ok", or why they are unusable
    models_status: Mapped[str] = mapped_column(String(200), default="", server_default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class RateLimit(Base):
    """One key's rate limit, shared by every API process: GCRA's theoretical arrival time."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: when the key's bucket is empty again, Unix seconds (GCRA's "theoretical arrival time")
    tat: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """A job that one process of many runs (the lost-session backstop): who holds it, until
    when (Unix seconds); a holder that stops renewing it loses it at ``expires_at``."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float)


class WebhookEndpoint(Base):
    """An owner's webhook receiver. ``secret`` (``whsec_`` + base64 of 32 random bytes) signs
    each delivery, so it is stored as is, not hashed; the API shows it once, at creation."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_owner", "owner_id", "enabled"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("webhook"))
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    #: the event types it receives (``contracts.webhooks.SUBSCRIBABLE`` values)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(64))
    #: the secret before the last rotation: it signs beside ``secret`` until
    #: ``previous_secret_until``, so receivers can switch without losing a delivery
    previous_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row the API processes send from, and its
    delivery log. Unique per (endpoint, event type, subject): an event is queued once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ux_webhook_deliveries_event", "endpoint_id", "event_type", "subject_id", unique=True
        ),
        Index("ix_webhook_deliveries_due", "status", "due_at"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    #: also the ``webhook-id`` header and the body's ``id``: the same on every attempt
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    #: the session id (session events), the tool call's id (tool.failed), its own id (tests)
    subject_id: Mapped[str] = mapped_column(String(40))
    session_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    #: the JSON body, made at the first attempt; retries send the same bytes
    body: Mapped[str | None] = mapped_column(Text, default=None)
    #: ``pending``, then ``delivered`` or ``failed``
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when the next attempt is due, Unix seconds
    due_at: Mapped[float] = mapped_column(Float)
    #: the process sending it now, and until when its claim holds (Unix seconds)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    #: the start of the receiver's last answer (1 KB at most)
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    #: the last 10 attempts: ``{at, status_code, error, seconds}``
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
