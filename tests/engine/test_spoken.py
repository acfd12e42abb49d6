"""Tool-call syntax is cut out of what the agent says, as the reply streams in.

The filter gets each reply the way LLMs write it: a word at a time, a character at a time, and
in pieces of three characters (a token boundary may fall anywhere); plain text must pass
unchanged, and as it comes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from livekit.agents import llm
from livekit.agents.types import FlushSentinel

from thinnest.engine.spoken import ToolSyntaxFilter, without_tool_syntax

pytestmark = pytest.mark.unit


def _splits(reply: str) -> dict[str, list[str]]:
    return {
        "words": re.findall(r"\s*\S+", reply),
        "characters": list(reply),
        "threes": [reply[i : i + 3] for i in range(0, len(reply), 3)],
    }


def _spoken(pieces: list[str]) -> str:
    spoken = ToolSyntaxFilter()
    return "".join([spoken.push(p) for p in pieces] + [spoken.flush()])


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        pytest.param(
            'I called order_status({"order_id": "42"}). Your order has shipped.',
            "I called. Your order has shipped.",
            id="call-in-a-sentence",
        ),
        pytest.param(
            'Let me check. order_status(order_id="42") It has shipped.',
            "Let me check. It has shipped.",
            id="keyword-arguments",
        ),
        pytest.param(
            "Sure. functions.end_call() Goodbye!", "Sure. Goodbye!", id="dotted-empty-call"
        ),
        pytest.param(
            'One moment. <tool_call>\n{"name": "order_status", "arguments": {"order_id": 42}}\n'
            "</tool_call> Done.",
            "One moment. Done.",
            id="tagged",
        ),
        pytest.param(
            '{"name": "get_weather", "arguments": {"city": "Paris"}}', "", id="bare-json-object"
        ),
        pytest.param(
            'Checking [{"name": "a", "arguments": {}}, {"name": "b", "parameters": {}}] now.',
            "Checking now.",
            id="json-list",
        ),
        pytest.param(
            'Here: {"type": "function", "function": {"name": "a", "arguments": "{}"}} ok.',
            "Here: ok.",
            id="openai-shape",
        ),
        pytest.param(
            'Okay. ```json\n{"name": "a", "arguments": {"x": "}"}}\n``` Bye.',
            "Okay. Bye.",
            id="fenced-with-a-brace-in-a-string",
        ),
        pytest.param(
            'Sure. <tool_call>{"name": "order_status", "arguments": {"order_id"',
            "Sure.",
            id="cut-off-call-at-the-end",
        ),
    ],
)
def test_tool_call_syntax_is_never_spoken(reply: str, said: str) -> None:
    for how, pieces in _splits(reply).items():
        assert _spoken(pieces).strip() == said, how


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("Hello! How can I help you today?", id="plain"),
        pytest.param("It is sunny (about 21 degrees) in Paris.", id="words-in-brackets"),
        pytest.param("Press f(x) on the panel, then wait.", id="a-bracket-after-a-word"),
        pytest.param("The code is [A12] and {not json}.", id="brackets-not-json"),
        pytest.param('He said {"a": 1} once.', id="json-without-a-name"),
        pytest.param("Use the `reset` button; 3 < 4 and 5 > 2.", id="backtick-and-less-than"),
        pytest.param("Your order 42 has shipped.\nAnything else?", id="newline"),
    ],
)
def test_plain_text_passes_unchanged(reply: str) -> None:
    for how, pieces in _splits(reply).items():
        assert _spoken(pieces) == reply, how


def test_plain_words_are_not_held_back() -> None:
    """Each word goes on as soon as the next one starts: the caller hears no delay."""
    spoken = ToolSyntaxFilter()
    out = [spoken.push(w) for w in ["Sure,", " I", " can", " help", " with", " that."]]
    # A word waits only for the next one (it might have been a name followed by "(").
    assert out == ["Sure,", "", " I", " can", " help", " with"]
    assert spoken.flush() == " that."


async def _chunks(*items: llm.ChatChunk | str | FlushSentinel) -> AsyncIterator:
    for item in items:
        yield item


def _text_chunk(text: str) -> llm.ChatChunk:
    return llm.ChatChunk(id="c", delta=llm.ChoiceDelta(role="assistant", content=text))


async def test_the_llm_node_keeps_structured_calls_and_cuts_text_calls() -> None:
    call = llm.FunctionToolCall(name="order_status", arguments='{"order_id": "42"}', call_id="x")
    structured = llm.ChatChunk(id="c", delta=llm.ChoiceDelta(role="assistant", tool_calls=[call]))
    out = [
        c
        async for c in without_tool_syntax(
            _chunks(
                _text_chunk("I called "),
                _text_chunk('order_status({"order_id":'),
                _text_chunk(' "42"}). It'),
                structured,
                FlushSentinel(),
                " has shipped.",
            )
        )
    ]
    text = "".join(
        c if isinstance(c, str) else (c.delta.content or "")
        for c in out
        if isinstance(c, str | llm.ChatChunk) and (isinstance(c, str) or c.delta)
    )
    assert text == "I called. It has shipped."
    calls = [
        tc for c in out if isinstance(c, llm.ChatChunk) and c.delta for tc in c.delta.tool_calls
    ]
    assert calls == [call]  # the real tool call reaches the session untouched
    assert any(isinstance(c, FlushSentinel) for c in out)
