"""Whisper reads a prompt and what the agent said last before each utterance.

Real model, real espeak-ng speech: a name Whisper spells its own way without a hint is
spelt the prompt's way with one. The agent session's hook (livekit-agents forwards each
conversation item to an STT with the ``chat_context`` capability) sets the context; each
call's view keeps its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from livekit.agents import llm
from livekit.agents.voice.events import ConversationItemAddedEvent

from thinnest.errors import ConfigError
from thinnest.providers import ConversationAware, registry
from thinnest.providers.whisper import WhisperSTT

from .conftest import espeak, word_error_rate, words

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline")]

SAID = "I want to talk to Jaxon."
HINT = "Our advisers today are Jaxon and Maddisyn."


def _spoken(text: str, path: Path) -> np.ndarray:
    """``text`` at 16 kHz as float32, with the silence around it a VAD would keep."""
    frames = espeak(text, path).frames(16000)
    pcm = np.concatenate([f.data for f in frames]).astype(np.float32) / 32768
    pad = np.zeros(8000, np.float32)
    return np.concatenate([pad, pcm, pad])


@pytest.fixture(scope="module")
def jaxon(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return _spoken(SAID, tmp_path_factory.mktemp("context") / "jaxon.wav")


def _build(settings, **options) -> WhisperSTT:
    engine = registry.build(
        "stt", "whisper", {"model": "tiny.en", "streaming": False, **options}, settings=settings
    )
    assert isinstance(engine, WhisperSTT)
    return engine


def _says(engine: WhisperSTT, audio: np.ndarray) -> list[str]:
    return words(engine.transcribe(audio, "en")[0])


def _heard_as_hinted(heard: list[str]) -> bool:
    """The sentence was heard (one word of six may differ: the CPU's kernels change
    Whisper's output), with the name spelt the hint's way."""
    return "jaxon" in heard and word_error_rate(SAID, " ".join(heard)) <= 1 / 6


def _item(role: str, text: str) -> ConversationItemAddedEvent:
    return ConversationItemAddedEvent(item=llm.ChatMessage(role=role, content=[text]))  # type: ignore[arg-type]


@pytest.mark.parametrize("window", ["fit", "full"])
def test_the_agents_words_steer_the_spelling(models_settings, jaxon, window) -> None:
    call = _build(models_settings, window=window).for_call()
    assert "jaxon" not in _says(call, jaxon)  # Whisper's own spelling (Jackson)
    call.set_context(HINT)
    assert _heard_as_hinted(_says(call, jaxon))


def test_a_prompt_option_steers_every_utterance(models_settings, jaxon) -> None:
    engine = _build(models_settings, prompt=HINT, context=False)
    assert _heard_as_hinted(_says(engine, jaxon))
    assert _heard_as_hinted(_says(engine.for_call(), jaxon))


def test_the_session_hands_over_what_the_agent_says(models_settings, jaxon) -> None:
    engine = _build(models_settings)
    assert engine.capabilities.chat_context  # livekit-agents forwards the conversation
    assert isinstance(engine, ConversationAware)
    call = engine.for_call()
    call._push_conversation_item(_item("user", HINT))  # the caller's words are not a hint
    assert "jaxon" not in _says(call, jaxon)
    call._push_conversation_item(_item("assistant", HINT))
    assert _heard_as_hinted(_says(call, jaxon))
    # another call (and the shared provider) never hear this call's agent
    assert "jaxon" not in _says(engine.for_call(), jaxon)
    assert "jaxon" not in _says(engine, jaxon)


def test_context_off_ignores_the_agent(models_settings, jaxon) -> None:
    engine = _build(models_settings, context=False)
    assert not engine.capabilities.chat_context
    call = engine.for_call()
    call.set_context(HINT)
    assert "jaxon" not in _says(call, jaxon)


def test_a_name_said_alone_keeps_the_agents_spelling(models_settings, tmp_path: Path) -> None:
    # All its words are the agent's own, as in a copied prompt; but without the context
    # Whisper still hears words there (its own spelling), so the caller did say them.
    audio = _spoken("Maddisyn.", tmp_path / "name.wav")
    call = _build(models_settings).for_call()
    assert "maddisyn" not in _says(call, audio)
    call.set_context(HINT)
    assert "maddisyn" in _says(call, audio)


def test_a_long_agent_reply_is_cut_to_its_end(models_settings, jaxon) -> None:
    call = _build(models_settings).for_call()
    call.set_context("Let me check that for you. " * 40 + HINT)  # ~300 tokens
    assert _heard_as_hinted(_says(call, jaxon))  # the end (the hint) is what Whisper reads


def test_a_prompt_of_more_than_1000_characters_is_refused(models_settings) -> None:
    with pytest.raises(ConfigError, match="invalid option 'prompt'") as err:
        registry.validate("stt", "whisper", {"prompt": "x" * 1001}, settings=models_settings)
    assert err.value.field == "providers.stt.options.prompt"
