"""Tool calls written as JSON text: accepted shapes, and calls refused by the tool schemas."""

from __future__ import annotations

import json

import pytest
from livekit.agents import llm

from thinnest.providers import _toolcalls

pytestmark = pytest.mark.unit


@llm.function_tool
async def book_table(people: int, time: str, name: str = "guest") -> str:
    """Book a table.

    Args:
        people: how many guests.
        time: when, e.g. 19:00.
        name: whose name the booking is under.
    """
    return "booked"


@llm.function_tool(
    raw_schema={
        "name": "end_call",
        "description": "End the call.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "enum": ["done", "rude"]}},
            "required": ["reason"],
            "additionalProperties": False,
        },
    }
)
async def end_call(raw_arguments: dict[str, object]) -> str:
    return "bye"


TOOLS = [book_table, end_call]


def _call(text: str) -> list[tuple[str, dict]]:
    result = _toolcalls.parse(text, TOOLS)
    assert result.error is None, result.error
    return [(c.name, json.loads(c.arguments)) for c in result.calls]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "book_table", "arguments": {"people": 2, "time": "19:00"}}\n'
        "</tool_call>",
        '{"name": "book_table", "arguments": {"people": 2, "time": "19:00"}}',
        '```json\n{"name": "book_table", "arguments": {"people": 2, "time": "19:00"}}\n```',
        '[{"name": "book_table", "arguments": "{\\"people\\": 2, \\"time\\": \\"19:00\\"}"}]',
        '<tool_call>{"name": "book_table", "parameters": {"people": 2, "time": "19:00"}}',
    ],
    ids=["qwen-tagged", "bare-object", "fenced", "list-with-string-args", "unclosed-tag"],
)
def test_accepts_the_shapes_small_models_write(text: str) -> None:
    assert _call(text) == [("book_table", {"people": 2, "time": "19:00"})]


def test_accepts_several_calls() -> None:
    text = (
        '<tool_call>{"name": "book_table", "arguments": {"people": 4, "time": "8pm"}}</tool_call>'
        '<tool_call>{"name": "end_call", "arguments": {"reason": "done"}}</tool_call>'
    )
    calls = _toolcalls.parse(text, TOOLS).calls
    assert [c.name for c in calls] == ["book_table", "end_call"]
    assert len({c.call_id for c in calls}) == 2


def test_plain_text_is_not_a_tool_call() -> None:
    result = _toolcalls.parse("Sure, for how many people?", TOOLS)
    assert result == _toolcalls.ParseResult()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"name": "order_pizza", "arguments": {}}', "no tool 'order_pizza'"),
        ('{"name": "book_table", "arguments": {"people": "many", "time": "19:00"}}', "'people'"),
        ('{"name": "book_table", "arguments": {"people": 2}}', "'time'"),
        ('{"name": "book_table", "arguments": [2, "19:00"]}', "must be a JSON object"),
        ('{"name": "end_call", "arguments": {}}', "missing required argument 'reason'"),
        ('{"name": "end_call", "arguments": {"reason": "bored"}}', "must be one of"),
        ('{"name": "end_call", "arguments": {"reason": "done", "x": 1}}', "unknown argument 'x'"),
        ('{"name": "end_call", "arguments": {"reason": 3}}', "must be of type string"),
        ("<tool_call>{name: book_table}</tool_call>", "not valid JSON"),
    ],
    ids=[
        "unknown-tool",
        "wrong-type",
        "missing-arg",
        "args-not-object",
        "raw-missing",
        "raw-enum",
        "raw-extra",
        "raw-type",
        "broken-json",
    ],
)
def test_refuses_invalid_calls(text: str, fragment: str) -> None:
    result = _toolcalls.parse(text, TOOLS)
    assert result.is_tool_call
    assert result.calls == []
    assert result.error is not None and fragment in result.error


def test_unknown_tool_error_lists_the_tools() -> None:
    error = _toolcalls.parse('{"name": "x", "arguments": {}}', TOOLS).error
    assert error is not None and "book_table" in error and "end_call" in error


def test_describes_tools_compactly() -> None:
    described = {d["name"]: d for d in _toolcalls.describe_tools(TOOLS)}
    assert described["book_table"]["description"].startswith("Book a table")
    params = described["book_table"]["parameters"]
    assert params["required"] == ["people", "time"]
    assert "title" not in json.dumps(params)
    assert described["end_call"]["parameters"]["required"] == ["reason"]


@pytest.mark.parametrize(
    ("text", "held"),
    [("<tool", True), ("  {", True), ("`", True), ("Hello", False), ("<b>", False), ("", False)],
)
def test_recognises_the_start_of_a_call(text: str, held: bool) -> None:
    assert _toolcalls.looks_like_tool_call(text) is held
