"""Request and response models of the API; an agent's config is validated here, once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from thinnest.store import jsonvalue

_NAME = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$"
_PROVIDER_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_TOOL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
RESERVED_TOOL_NAMES = frozenset({"end_call"})


#: What an agent says first unless its config says otherwise.
DEFAULT_GREETING = "Hello! How can I help you today?"


#: The deepest nesting of a free-form JSON object in a request (options, tool parameters,
#: ``context``; the context has its own, lower bound: ``Settings.max_context_depth``). Deeper
#: values cannot be served back (pydantic serialises about 255 levels).
MAX_JSON_DEPTH = 32


def storable(value: Any) -> Any:
    """Refuse what could be stored but not served back, anywhere in a value.

    A lone surrogate: JSON may spell one (``"\\ud800"``); pydantic refuses it only in a ``str``
    field with a length or pattern, not in a plain ``str``, a dict key or free-form JSON.
    U+0000: PostgreSQL's text columns and query parameters refuse it (a 500 there).
    ``NaN`` and ``Infinity``: Python's JSON parser reads them; they are not JSON.
    """
    where = jsonvalue.lone_surrogate_at(value)
    if where is not None:
        raise ValueError(
            f"holds a lone surrogate{_at(where)}: a \\ud800-\\udfff escape without its pair is "
            "not Unicode text"
        )
    where = jsonvalue.nul_at(value)
    if where is not None:
        raise ValueError(f"holds U+0000 (NUL){_at(where)}, which is not stored as text")
    where = jsonvalue.non_finite_at(value)
    if where is not None:
        raise ValueError(f"holds NaN or Infinity{_at(where)}, which JSON has no number for")
    return value


def _at(where: str) -> str:
    return f" (at {where[:80]})" if where else ""


def _bounded_depth(value: Any) -> Any:
    levels = jsonvalue.depth(value)
    if levels > MAX_JSON_DEPTH:
        raise ValueError(f"is nested {levels} levels deep; the limit is {MAX_JSON_DEPTH}")
    return value


#: A free-form JSON object from a request, at most MAX_JSON_DEPTH deep.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_bounded_depth)]


class _Strict(BaseModel):
    """A request body: no unknown fields, and nothing that could not be served back."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable_only(cls, value: Any) -> Any:
        return storable(value)


class ProviderChoice(_Strict):
    """A provider by registry name, with its options (validated by the provider registry)."""

    name: str = Field(pattern=_PROVIDER_NAME)
    options: JsonObject = Field(default_factory=dict)


class Providers(_Strict):
    stt: ProviderChoice = ProviderChoice(name="whisper")
    llm: ProviderChoice = ProviderChoice(name="llama")
    tts: ProviderChoice = ProviderChoice(name="piper")
    vad: ProviderChoice = ProviderChoice(name="silero")
    turn_detection: ProviderChoice = ProviderChoice(name="transcript")


class HttpTool(_Strict):
    """A tool the LLM may call: an HTTP request whose JSON answer goes back to the LLM.

    Header values may name a secret from settings as ``${secret:NAME}``.
    """

    name: str = Field(pattern=_TOOL_NAME)
    description: str = Field(min_length=1, max_length=1000)
    parameters: JsonObject = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments (an object schema)",
        json_schema_extra={
            "required": ["type"],
            "properties": {"type": {"const": "object"}, "properties": {"type": "object"}},
        },
    )
    url: AnyHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_TOOL_NAMES:
            raise ValueError(f"{v!r} is a built-in tool name")
        return v

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError('must be a JSON schema with "type": "object"')
        if not isinstance(v.get("properties", {}), dict):
            raise ValueError('"properties" must be an object')
        return v


class AgentConfig(_Strict):
    """Everything that defines an agent; a snapshot of it goes with each session's dispatch."""

    name: str = Field(pattern=_NAME)
    instructions: str = Field(
        "You are a helpful, concise voice assistant. Answer in one or two short sentences.",
        min_length=1,
        max_length=20000,
    )
    greeting: str | None = Field(DEFAULT_GREETING, max_length=1000)
    closing_message: str = Field(
        "We are out of time for this call. Goodbye!",
        max_length=1000,
        description="said when max_duration is reached",
    )
    error_message: str = Field(
        "Sorry, I had trouble with that. Could you say it again?",
        min_length=1,
        max_length=1000,
        description="said when a turn fails (the language model or speech recognition failed)",
    )
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    voice: str | None = Field(None, max_length=100)
    providers: Providers = Field(default_factory=Providers)
    recording: StrictBool = False
    max_duration: StrictInt = Field(600, gt=0)
    tools: list[HttpTool] = Field(default_factory=list, max_length=32)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[HttpTool]) -> list[HttpTool]:
        names = [t.name for t in tools]
        if len(names) != len(set(names)):
            raise ValueError("tool names must be unique")
        return tools


class AgentPatch(_Strict):
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


class VoiceStartRequest(_Strict):
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
    status: Literal["starting", "active", "ended", "error", "failed"]
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


class KeyCreate(_Strict):
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


class KeyCreated(KeyOut):
    key: str = Field(description="the API key itself; shown only in this response")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
