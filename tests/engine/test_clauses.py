"""The agent's reply reaches a sentence-at-a-time TTS first clause first.

The tokenizer gets the reply the way the LLM writes it, a word at a time, through
livekit-agents' own stream classes; the TTS wrapper is tested with the real Piper and
espeak-ng providers.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from livekit.agents import tts

from thinnest.config import Settings
from thinnest.engine.clauses import FirstClauseTokenizer, for_session
from thinnest.providers import registry

from .conftest import REPO

pytestmark = pytest.mark.unit


async def _pieces_out(reply: str) -> list[tuple[str, list[str]]]:
    """Push ``reply`` word by word; after each word, what has gone to the TTS so far."""
    stream = FirstClauseTokenizer().stream()
    out: list[str] = []

    async def read() -> None:
        async for data in stream:
            out.append(data.token.strip())

    reader = asyncio.create_task(read())
    seen = []
    for word in re.findall(r"\s*\S+", reply):
        stream.push_text(word)
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append((word.strip(), list(out)))
    stream.end_input()
    await reader
    seen.append(("<end>", out))
    return seen


async def test_the_first_clause_goes_as_soon_as_the_next_word_comes() -> None:
    seen = await _pieces_out(
        "Sure, I can help you with that. Please give me the order number and the new address."
    )
    assert seen[0] == ("Sure,", [])
    assert seen[1] == ("I", ["Sure,"])  # one word later, not at the sentence's end
    assert seen[-1][1] == [
        "Sure,",
        "I can help you with that.",
        "Please give me the order number and the new address.",
    ]


async def test_only_the_first_clause_is_cut() -> None:
    *_, (_, out) = await _pieces_out(
        "Yes. The next train leaves at 11:00, from platform 2, in ten minutes. Anything else?"
    )
    # a time's colon is not a pause; later commas stay inside their sentence
    assert out == [
        "Yes.",
        "The next train leaves at 11:00, from platform 2, in ten minutes.",
        "Anything else?",
    ]


async def test_a_reply_without_a_pause_goes_whole() -> None:
    *_, (_, out) = await _pieces_out("The pharmacy opens from 8:00 AM to 5:00 PM on Main Street.")
    assert out == ["The pharmacy opens from 8:00 AM to 5:00 PM on Main Street."]


async def test_each_segment_starts_with_a_clause_again() -> None:
    stream = FirstClauseTokenizer().stream()
    for text in ("One moment, let me check. ", "Done"):
        stream.push_text(text)
    stream.flush()
    for text in ("Okay, booked it ", "for you."):
        stream.push_text(text)
    stream.end_input()
    out = [data.token.strip() async for data in stream]
    # short sentences ("Done") wait to join the next one, as livekit-agents' own tokenizer does
    assert out == ["One moment,", "let me check. Done", "Okay,", "booked it for you."]


@pytest.mark.integration
@pytest.mark.parametrize("name", ["hibari", "piper", "espeak"])
async def test_a_sentence_at_a_time_tts_is_wrapped_and_speaks(tmp_path, name: str) -> None:
    settings = Settings(data_dir=tmp_path, models_dir=REPO / ".thinnest" / "models")
    engine = registry.build("tts", name, {}, settings=settings)
    assert not engine.capabilities.streaming
    spoken = for_session(engine)
    assert isinstance(spoken, tts.StreamAdapter) and spoken.capabilities.streaming
    assert spoken.sample_rate == engine.sample_rate
    frames = 0
    async with spoken.stream() as stream:
        stream.push_text("Sure, ")
        stream.push_text("I can help.")
        stream.end_input()
        async for audio in stream:
            frames += audio.frame.samples_per_channel
    assert frames > engine.sample_rate // 2  # both pieces spoken: over half a second
    await spoken.aclose()
    fixed = registry.build("tts", "fixed", {}, settings=settings)
    assert for_session(fixed) is not fixed  # non-streaming too: wrapped the same way
