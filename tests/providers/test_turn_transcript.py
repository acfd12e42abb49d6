"""The ``transcript`` turn detection: a turn ends when the user's words end a sentence.

The verdicts are checked on text, then on what whisper tiny.en writes of real espeak-ng
speech: words broken off mid-thought, and the same words with the sentence finished.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from livekit.agents import llm

from thinnest.errors import ConfigError
from thinnest.providers import registry
from thinnest.providers.turn import TranscriptTurnDetector, finished

from .conftest import espeak

pytestmark = pytest.mark.usefixtures("offline")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I want to book a table for two.", True),
        ("What time do you open?", True),
        ("Stop!", True),
        ('He said "no."', True),
        ("(Thank you.) ", True),
        ("予約したいです。", True),
        ("", True),
        ("Can you tell me the opening hours of", False),
        ("I would like a table for two,", False),
        ("So...", False),
        ("Well…", False),
        ("I want a ref-", False),
        ("I was thinking — ", False),
    ],
    ids=[
        "statement",
        "question",
        "exclamation",
        "closing-quote",
        "closing-bracket",
        "japanese",
        "nothing-said",
        "broken-off",
        "comma",
        "ellipsis",
        "ellipsis-char",
        "cut-word",
        "dash",
    ],
)
def test_a_sentence_end_finishes_the_turn(text: str, expected: bool) -> None:
    assert finished(text) is expected


@pytest.mark.unit
async def test_the_detector_reads_the_users_last_message(models_settings) -> None:
    detector = registry.build("turn_detection", "transcript", {}, settings=models_settings)
    assert isinstance(detector, TranscriptTurnDetector)
    assert detector.model == "transcript-punctuation"
    chat = llm.ChatContext.empty()
    chat.add_message(role="assistant", content="How can I help you today?")
    chat.add_message(role="user", content="I would like to book a table for")
    assert await detector.predict_end_of_turn(chat) == 0.0
    assert await detector.predict_end_of_turn(chat) < await detector.unlikely_threshold("en")
    chat.add_message(role="user", content="two people tomorrow.")
    assert await detector.predict_end_of_turn(chat) == 1.0
    # the agent's words are not the user's: a question it asked decides nothing
    assert await detector.predict_end_of_turn(llm.ChatContext.empty()) == 1.0
    assert await detector.supports_language("de")


@pytest.mark.unit
def test_the_transcript_detector_takes_no_options(models_settings) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("turn_detection", "transcript", {"mode": "vad"}, settings=models_settings)
    assert err.value.field == "providers.turn_detection.options.mode"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("said_so_far", "rest"),
    [
        ("So I was wondering if you could maybe", "call me back tomorrow."),
        ("I would like to book a table for two people and", "a high chair for my son."),
    ],
    ids=["trailing-off", "and"],
)
async def test_whisper_ends_a_spoken_sentence_and_not_a_pause_inside_it(
    models_settings, tmp_path: Path, said_so_far: str, rest: str
) -> None:
    tiny = registry.build("stt", "whisper", {"model": "tiny.en"}, settings=models_settings)
    detector = registry.build("turn_detection", "transcript", {}, settings=models_settings)

    async def verdict(text: str) -> tuple[str, float]:
        speech = espeak(text, tmp_path / "said.wav")
        pcm = np.concatenate([f.data for f in speech.frames(16000)]).astype(np.float32) / 32768
        quiet = np.zeros(8000, np.float32)
        heard, _ = tiny.transcribe(np.concatenate([quiet, pcm, quiet]))
        chat = llm.ChatContext.empty()
        chat.add_message(role="user", content=heard)
        return heard, await detector.predict_end_of_turn(chat)

    # the caller pauses mid-thought: whisper writes the words without an end mark
    heard, at_pause = await verdict(said_so_far)
    assert at_pause == 0.0 and len(heard.split()) >= 4, heard
    # the caller finishes the sentence
    heard, at_end = await verdict(f"{said_so_far} {rest}")
    assert at_end == 1.0, heard
