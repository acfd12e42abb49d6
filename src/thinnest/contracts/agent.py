"""An agent's config: everything that defines an agent, validated once where it enters.

The API validates it when an agent is saved (:func:`thinnest.services.agents.checked`), the
store returns it (:func:`thinnest.store.agents.config_of`), and a snapshot of it goes to the
voice engine with each session's dispatch (:mod:`thinnest.contracts.dispatch`).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import AnyHttpUrl, Field, StrictBool, StrictInt, field_validator

from thinnest.contracts.values import JsonObject, StrictModel

#: The kinds of provider an agent has, one of each.
ProviderKind = Literal["stt", "llm", "tts", "vad", "turn_detection"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = get_args(ProviderKind)

#: The offline provider of each kind, used when an agent names none.
DEFAULT_PROVIDERS: dict[ProviderKind, str] = {
    "stt": "whisper",
    "llm": "llama",
    "tts": "hibari",
    "vad": "silero",
    "turn_detection": "transcript",
}

_NAME = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$"
_PROVIDER_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_TOOL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
RESERVED_TOOL_NAMES = frozenset({"end_call"})


#: What an agent says first unless its config says otherwise.
DEFAULT_GREETING = "Hello! How can I help you today?"


class ProviderChoice(StrictModel):
    """A provider by registry name, with its options (validated by the provider registry)."""

    name: str = Field(pattern=_PROVIDER_NAME)
    options: JsonObject = Field(default_factory=dict)


class Providers(StrictModel):
    """One provider of each kind; an agent that names none gets the offline default."""

    stt: ProviderChoice = ProviderChoice(name=DEFAULT_PROVIDERS["stt"])
    llm: ProviderChoice = ProviderChoice(name=DEFAULT_PROVIDERS["llm"])
    tts: ProviderChoice = ProviderChoice(name=DEFAULT_PROVIDERS["tts"])
    vad: ProviderChoice = ProviderChoice(name=DEFAULT_PROVIDERS["vad"])
    turn_detection: ProviderChoice = ProviderChoice(name=DEFAULT_PROVIDERS["turn_detection"])

    def of(self, kind: ProviderKind) -> ProviderChoice:
        """The provider chosen for ``kind``."""
        choice: ProviderChoice = getattr(self, kind)
        return choice


class HttpTool(StrictModel):
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


class AgentConfig(StrictModel):
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
    max_duration: StrictInt | None = Field(
        None,
        gt=0,
        description="seconds; unset: the server's default (THINNEST_DEFAULT_MAX_DURATION), "
        "filled in when the agent is saved",
    )
    tools: list[HttpTool] = Field(default_factory=list, max_length=32)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[HttpTool]) -> list[HttpTool]:
        names = [t.name for t in tools]
        if len(names) != len(set(names)):
            raise ValueError("tool names must be unique")
        return tools
