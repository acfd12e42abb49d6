"""Which transcripts are backchannels, and that only those said over the agent are dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from livekit.agents import stt

from thinnest.engine.backchannel import is_backchannel, without_backchannels


@pytest.mark.parametrize(
    "text",
    [
        "Mm-hmm.",
        "mhm",
        "Okay.",
        "Okay, okay.",
        "Right.",
        "Yeah, yeah, yeah.",
        "Oh, I see.",
        "Uh-huh",
        "Got it.",
        "All right.",
        "OK",
        "yes, right",
    ],
)
def test_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "...",
        "Stop.",
        "No.",
        "Wait.",
        "Okay, but what about Tuesday?",
        "Right, I meant Paris.",
        "Yeah, tell me the weather.",
        "I see a problem.",
        "Okay okay okay okay okay",
        "What?",
        "good morning",
    ],
)
def test_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


def _final(text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(
        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
        alternatives=[stt.SpeechData(language="en", text=text)],
    )


async def _events(*items: stt.SpeechEvent) -> AsyncIterator[stt.SpeechEvent | str]:
    for item in items:
        yield item


async def _texts(floor: bool, *texts: str) -> tuple[list[str], list[str]]:
    dropped: list[str] = []
    events = _events(
        stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH), *(_final(t) for t in texts)
    )
    kept = [
        e.alternatives[0].text if isinstance(e, stt.SpeechEvent) and e.alternatives else "EOS"
        async for e in without_backchannels(events, lambda: floor, on_dropped=dropped.append)
    ]
    return kept, dropped


async def test_over_the_agent_a_backchannel_is_dropped_and_words_pass() -> None:
    kept, dropped = await _texts(True, "Mm-hmm.", "Stop, I have a question.", "Okay.")
    assert kept == ["EOS", "Stop, I have a question."]
    assert dropped == ["Mm-hmm.", "Okay."]


async def test_with_the_agent_silent_okay_is_an_answer() -> None:
    kept, dropped = await _texts(False, "Okay.", "Yes.")
    assert kept == ["EOS", "Okay.", "Yes."] and dropped == []
