"""The data-channel protocol: JSON events the engine sends to clients on topic ``thinnest``.

Pure functions, no I/O: each returns the message dict; :func:`encode` makes the bytes.
The first fields of each message are the contract's; more may be added, never removed.
"""

from __future__ import annotations

import json
import time
from typing import Any

TOPIC = "thinnest"
#: Server-to-engine control messages (``{"type": "end", "reason": ...}``), sent by the API.
CONTROL_TOPIC = "thinnest.control"

#: Why a call ended, as sent in ``call_ended.reason`` and stored as the session's end reason.
REASONS = (
    "user_left",
    "agent_ended",
    "max_duration",
    "ended_by_api",
    "no_show",
    "room_closed",
    "error",
)


#: Reasons the API may give in an end control message; any other reads as ``ended_by_api``.
CONTROL_REASONS = ("ended_by_api", "user_left")


def end_reason(control: bytes) -> str:
    """The reason of an end control message (``{"type": "end", "reason": ...}``): the API's
    end route says ``ended_by_api``, a caller's own hang-up through the API ``user_left``."""
    try:
        reason = json.loads(control).get("reason")
    except (ValueError, AttributeError):
        return "ended_by_api"
    return reason if reason in CONTROL_REASONS else "ended_by_api"


def transcript(
    role: str, text: str, *, final: bool, item_id: str | None = None, interrupted: bool = False
) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "transcript", "role": role, "text": text, "final": final}
    if item_id:
        msg["id"] = item_id
    if interrupted:
        msg["interrupted"] = True
    msg["timestamp"] = round(time.time(), 3)
    return msg


def call_ended(duration: float, reason: str) -> dict[str, Any]:
    return {"type": "call_ended", "duration": round(duration, 3), "reason": reason}


def agent_state(state: str) -> dict[str, Any]:
    return {"type": "agent_state", "state": state}


def tool_call(
    name: str, arguments: dict[str, Any], *, duration: float, error: str | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "tool_call",
        "name": name,
        "arguments": arguments,
        "duration": round(duration, 3),
    }
    if error is not None:
        msg["error"] = error
    return msg


def metrics(latency: dict[str, float], *, role: str) -> dict[str, Any]:
    """Latency figures of one turn (seconds): the user's turn has end_of_turn_delay and stt,
    the agent's llm_ttft, tts_ttfb and voice_to_voice."""
    return {"type": "metrics", "role": role, **{k: round(v, 4) for k, v in latency.items()}}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
