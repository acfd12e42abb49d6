"""``thinnest say``: the README's way to make a caller's question, on the default install
(the hibari voice; espeak-ng is no longer installed by default)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests._cli import run_thinnest
from thinnest.calls import check_wav
from thinnest.config import Settings
from thinnest.providers import registry

from .conftest import word_error_rate

pytestmark = pytest.mark.integration

QUESTION = "How many legs does a spider have?"


def test_say_writes_a_wav_that_call_takes_and_whisper_understands(
    tmp_path: Path, models_settings: Settings
) -> None:
    out = tmp_path / "question.wav"
    run = run_thinnest(tmp_path, "say", QUESTION, "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert str(out) in run.stdout
    check_wav(out)  # what `thinnest call --wav` requires
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    seconds = pcm.size / 24000
    assert 1.0 < seconds < 5.0, seconds  # seven words at a speaking rate
    assert np.abs(pcm).max() > 3000  # audible, not silence

    # Whisper (16 kHz) hears the question.
    at_16k = np.interp(np.arange(0, pcm.size, 1.5), np.arange(pcm.size), pcm) / 32768.0
    whisper = registry.build(
        "stt", "whisper", {"model": "tiny.en", "streaming": False}, settings=models_settings
    )
    text, _confidence = whisper.for_call().transcribe(at_16k.astype(np.float32), "en")
    assert word_error_rate(QUESTION, text) <= 0.3, text


def test_say_refuses_empty_text_and_an_unwritable_path(tmp_path: Path) -> None:
    empty = run_thinnest(tmp_path, "say", "   ", "-o", str(tmp_path / "a.wav"))
    assert empty.returncode == 1
    assert "error (text): nothing to say" in empty.stderr
    assert "Traceback" not in empty.stderr
    nowhere = run_thinnest(tmp_path, "say", "Hello.", "-o", str(tmp_path / "no" / "a.wav"))
    assert nowhere.returncode == 1
    assert "error (out): cannot write" in nowhere.stderr
    assert not (tmp_path / "a.wav").exists()
