"""The calls the model made: those answered since the user spoke, a call asked again."""

from __future__ import annotations

import json
from typing import Any

from livekit.agents import llm

from thinnest.providers import _toolcalls

__all__ = ["answered_this_turn", "is_repeat", "looks_like_json_call"]


def _arguments(call: llm.FunctionToolCall | llm.FunctionCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def answered_this_turn(chat_ctx: llm.ChatContext) -> list[tuple[str, dict[str, Any]]]:
    """The calls (name, arguments) made and answered since the user last spoke."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    answered: list[tuple[str, dict[str, Any]]] = []
    for item in chat_ctx.items:
        if item.type == "message" and item.role == "user":
            calls.clear()
            answered.clear()
        elif item.type == "function_call":
            calls[item.call_id] = (item.name, _arguments(item))
        elif item.type == "function_call_output" and item.call_id in calls:
            answered.append(calls[item.call_id])
    return answered


def is_repeat(call: llm.FunctionToolCall, answered: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether ``call`` asks again what an answered call asked (extra arguments, such as the
    schema's ``"type": "object"`` a small model copies in, do not make it new)."""
    arguments = _arguments(call)
    return any(
        name == call.name and all(arguments.get(k) == v for k, v in before.items())
        for name, before in answered
    )


def looks_like_json_call(text: str) -> bool:
    """A held-back reply that parses as JSON with a ``name`` is a (bad) call, not speech."""
    stripped = text.strip()
    return stripped.startswith(("{", "[", _toolcalls.OPEN_TAG)) and '"name"' in stripped
