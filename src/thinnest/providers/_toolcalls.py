"""Tool calls written as JSON text by a small local LLM: describe, parse and validate (no I/O).

Local models answer a tool call with text, not structured ``tool_calls``. Qwen2.5 writes
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; small models also write the bare
object, a list of them, or a fenced JSON block. :func:`parse` accepts these, then checks each
call against the session's tools: the tool must exist and its arguments must match its
schema (pydantic for ``@function_tool``, a JSON-schema subset for raw tools).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from livekit.agents import llm
from livekit.agents.llm.tool_context import (
    FunctionTool,
    RawFunctionTool,
    get_fnc_tool_names,
    is_function_tool,
    is_raw_function_tool,
)
from livekit.agents.llm.utils import build_legacy_openai_schema, validated_arguments

from thinnest.errors import field_of

__all__ = ["OPEN_TAG", "ParseResult", "describe_tools", "looks_like_tool_call", "parse"]

OPEN_TAG = "<tool_call>"
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


@dataclass
class ParseResult:
    """What a model's text turned out to be.

    Attributes:
        calls: valid tool calls, ready for the session.
        error: why the text looked like a tool call but was not a valid one (``None`` when
            it was valid, or was plain text).
        is_tool_call: the text was meant as a tool call (valid or not).
    """

    calls: list[llm.FunctionToolCall] = field(default_factory=list)
    error: str | None = None
    is_tool_call: bool = False


def _function_tools(tools: Sequence[llm.Tool]) -> dict[str, FunctionTool | RawFunctionTool]:
    found: dict[str, FunctionTool | RawFunctionTool] = {}
    for tool in llm.ToolContext(list(tools)).function_tools.values():
        if is_function_tool(tool) or is_raw_function_tool(tool):
            found[tool.info.name] = tool
    return found


def _compact(schema: Any) -> Any:
    # "title" keys are pydantic noise: dropping them saves prompt tokens (TTFT) on CPU.
    if isinstance(schema, dict):
        return {k: _compact(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_compact(v) for v in schema]
    return schema


def describe_tools(tools: Sequence[llm.Tool]) -> list[dict[str, Any]]:
    """Compact JSON descriptions (name, description, parameters) of the function tools."""
    described = []
    for name, tool in _function_tools(tools).items():
        if isinstance(tool, RawFunctionTool):
            raw = tool.info.raw_schema
            entry = {
                "name": name,
                "description": raw.get("description", ""),
                "parameters": raw.get("parameters", {"type": "object", "properties": {}}),
            }
        else:
            entry = build_legacy_openai_schema(tool, internally_tagged=True)
            entry.pop("type", None)
        described.append(_compact(entry))
    return described


def looks_like_tool_call(text: str) -> bool:
    """Whether a reply's beginning suggests a tool call (so it must not be spoken yet)."""
    head = text.lstrip()
    if not head:
        return False
    return head[0] in "{[`" or OPEN_TAG.startswith(head[: len(OPEN_TAG)])


def _candidates(text: str) -> list[Any] | None:
    stripped = text.strip()
    fence = _FENCE.match(stripped)
    if fence:
        stripped = fence.group(1)
    chunks = _TAGGED.findall(stripped) if OPEN_TAG in stripped else [stripped]
    objects: list[Any] = []
    for chunk in chunks:
        try:
            value = json.loads(chunk)
        except ValueError:
            return None
        objects.extend(value if isinstance(value, list) else [value])
    return objects


def _check_raw(schema: dict[str, Any], args: dict[str, Any]) -> str | None:
    props: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in args:
            return f"missing required argument {name!r}"
    for name, value in args.items():
        if name not in props:
            if schema.get("additionalProperties", True) is False:
                return f"unknown argument {name!r}"
            continue
        types = props[name].get("type")
        allowed = [types] if isinstance(types, str) else (types or [])
        if allowed and not any(
            isinstance(value, _JSON_TYPES.get(t, (object,)))
            and not (t in ("integer", "number") and isinstance(value, bool))
            for t in allowed
        ):
            return f"argument {name!r} must be of type {'/'.join(allowed)}"
        if "enum" in props[name] and value not in props[name]["enum"]:
            return f"argument {name!r} must be one of {props[name]['enum']}"
    return None


def parse(text: str, tools: Sequence[llm.Tool]) -> ParseResult:
    """Turn a model's reply into validated tool calls, if it is one.

    Args:
        text: the whole reply.
        tools: the tools offered in this turn.

    Returns:
        A :class:`ParseResult`; plain text gives ``is_tool_call=False`` and no calls.
    """
    objects = _candidates(text)
    tagged = OPEN_TAG in text
    if objects is None:
        return ParseResult(
            error="the tool call is not valid JSON" if tagged else None, is_tool_call=tagged
        )
    if not objects or not all(isinstance(o, dict) and "name" in o for o in objects):
        return ParseResult(
            error="a tool call needs a name" if tagged else None, is_tool_call=tagged
        )
    known = _function_tools(tools)
    result = ParseResult(is_tool_call=True)
    for obj in objects:
        name = obj["name"]
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except ValueError:
                args = None
        if not isinstance(name, str) or name not in known:
            names = ", ".join(get_fnc_tool_names(list(known.values()))) or "none"
            result.error = f"there is no tool {name!r}; the tools are: {names}"
            return result
        if not isinstance(args, dict):
            result.error = f"the arguments of {name} must be a JSON object"
            return result
        tool = known[name]
        if isinstance(tool, RawFunctionTool):
            problem = _check_raw(tool.info.raw_schema.get("parameters", {}), args)
        else:
            try:
                validated_arguments(tool, args)
                problem = None
            except (pydantic.ValidationError, ValueError, TypeError) as exc:
                problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, pydantic.ValidationError):
                    first = exc.errors(include_url=False)[0]
                    loc = field_of(first["loc"], default="arguments")
                    problem = f"argument {loc!r}: {first['msg']}"
        if problem is not None:
            result.error = f"invalid call of {name}: {problem}"
            return result
        result.calls.append(
            llm.FunctionToolCall(
                name=name, arguments=json.dumps(args), call_id=f"call_{uuid.uuid4().hex[:12]}"
            )
        )
    return result
