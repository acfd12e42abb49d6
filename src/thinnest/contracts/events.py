"""Events: what the voice engine sends clients on the data channel (topic ``thinnest``), what
the WebSocket gateway adds, and the API's control messages to the engine.

Each event is a pydantic model tagged by ``type``; :meth:`Event.encode` makes the bytes
(fields that are ``None`` are left out) and :func:`parse_event` reads any of them back. The
first fields of each event are the public contract's; more may be added, never removed.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from thinnest.contracts.session import CONTROL_END_REASONS, EndReason

#: The data-channel topic of the engine's events.
TOPIC = "thinnest"
#: Server-to-engine control messages (``{"type": "end", "reason": ...}``), sent by the API.
CONTROL_TOPIC = "thinnest.control"

#: LiveKit's per-turn metrics (``ChatMessage.metrics``) and the names ``metrics`` events use.
LATENCY_KEYS = {
    "end_of_turn_delay": "end_of_turn_delay",
    "transcription_delay": "stt",
    "llm_node_ttft": "llm_ttft",
    "tts_node_ttfb": "tts_ttfb",
    "e2e_latency": "voice_to_voice",
}


class Event(BaseModel):
    """Base of every event: ``type`` first, then the event's own fields."""

    type: str

    def encode(self) -> bytes:
        """Compact UTF-8 JSON, without the fields that are ``None``."""
        return self.to_json().encode()

    def to_json(self) -> str:
        return json.dumps(
            self.model_dump(exclude_none=True), separators=(",", ":"), ensure_ascii=False
        )


class Transcript(Event):
    """A line of the conversation; ``final: false`` is an interim result that a later one
    with the same ``id`` replaces."""

    type: Literal["transcript"] = "transcript"
    role: Literal["user", "agent"]
    text: str
    final: bool
    id: str | None = None
    interrupted: Literal[True] | None = None
    timestamp: float = Field(default_factory=lambda: round(time.time(), 3))


class CallEnded(Event):
    """Sent before the engine leaves the room, for every ending."""

    type: Literal["call_ended"] = "call_ended"
    duration: float
    reason: EndReason


class AgentState(Event):
    """The agent's state: ``initializing``, ``listening``, ``thinking``, ``speaking``…"""

    type: Literal["agent_state"] = "agent_state"
    state: str


class ToolCalled(Event):
    """A tool the agent called, with how long it took and its error, if any."""

    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: dict[str, Any]
    duration: float
    error: str | None = None


class Metrics(Event):
    """Latency figures of one turn in seconds: the user's turn has ``end_of_turn_delay`` and
    ``stt``, the agent's ``llm_ttft``, ``tts_ttfb`` and ``voice_to_voice``."""

    model_config = ConfigDict(extra="allow")

    type: Literal["metrics"] = "metrics"
    role: Literal["user", "agent"]


class ErrorEvent(Event):
    """Something failed that the client should know of (the call may go on)."""

    type: Literal["error"] = "error"
    code: str
    message: str


class Ready(Event):
    """The WebSocket gateway's first event: the session joined, audio may flow."""

    type: Literal["ready"] = "ready"
    session_id: str
    sample_rate: int
    frame_ms: int


AnyEvent = Annotated[
    Transcript | CallEnded | AgentState | ToolCalled | Metrics | ErrorEvent | Ready,
    Field(discriminator="type"),
]
_EVENTS: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def parse_event(data: str | bytes) -> Event:
    """Read an event (a ``pydantic.ValidationError`` if it is not one this version knows)."""
    event: Event = _EVENTS.validate_json(data)
    return event


def transcript(
    role: Literal["user", "agent"],
    text: str,
    *,
    final: bool,
    item_id: str | None = None,
    interrupted: bool = False,
) -> Transcript:
    return Transcript(
        role=role, text=text, final=final, id=item_id or None, interrupted=interrupted or None
    )


def call_ended(duration: float, reason: EndReason | str) -> CallEnded:
    return CallEnded(duration=round(duration, 3), reason=EndReason(reason))


def tool_called(
    name: str, arguments: dict[str, Any], *, duration: float, error: str | None = None
) -> ToolCalled:
    return ToolCalled(name=name, arguments=arguments, duration=round(duration, 3), error=error)


def metrics(latency: dict[str, float], *, role: Literal["user", "agent"]) -> Metrics:
    return Metrics(role=role, **{k: round(v, 4) for k, v in latency.items()})


# --- the API's control messages to the engine (topic CONTROL_TOPIC) ---------------------


def end_control(reason: EndReason) -> bytes:
    """The API asks the engine to end the call for ``reason``."""
    return json.dumps({"type": "end", "reason": str(reason)}).encode()


def end_reason(control: bytes) -> EndReason:
    """The reason of an end control message (``{"type": "end", "reason": ...}``): the API's
    end route says ``ended_by_api``, a caller's own hang-up through the API ``user_left``."""
    try:
        reason = json.loads(control).get("reason")
    except (ValueError, AttributeError):
        return EndReason.ENDED_BY_API
    return EndReason(reason) if reason in CONTROL_END_REASONS else EndReason.ENDED_BY_API
