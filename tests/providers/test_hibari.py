"""The default TTS ``hibari`` runs for real, with the network refused.

What whisper hears of it is in ``test_speech.py`` (with the other offline voices); here: it
streams sentence by sentence, resamples to 48 kHz, refuses a corrupt model file, and its
options are validated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from thinnest.errors import ConfigError
from thinnest.providers import registry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline")]

_THREE = (
    "Hello there. "
    "This second sentence is a good deal longer than the first one, so it takes longer. "
    "And the third one, which closes the reply, is about as long as the second one was."
)


async def _timed(engine, text: str) -> tuple[np.ndarray, float, float]:
    """The audio of ``text``, the seconds to its first frame, and to its end."""
    started = time.perf_counter()
    first: float | None = None
    chunks = []
    async with engine.synthesize(text) as stream:
        async for audio in stream:
            if first is None:
                first = time.perf_counter() - started
            assert audio.frame.sample_rate == engine.sample_rate
            chunks.append(np.frombuffer(audio.frame.data, dtype=np.int16))
    assert first is not None
    return np.concatenate(chunks), first, time.perf_counter() - started


async def test_hibari_streams_sentence_by_sentence(models_settings) -> None:
    engine = registry.build("tts", "hibari", {}, settings=models_settings)
    assert engine.sample_rate == 24000 and not engine.capabilities.streaming
    # One piece per sentence, the first one being the first sentence's audio alone.
    pieces = list(engine.synthesize_pcm(_THREE))
    assert len(pieces) == 3
    alone = b"".join(engine.synthesize_pcm("Hello there."))
    assert 0.7 < len(pieces[0]) / len(alone) < 1.4
    assert len(pieces[0]) < 0.4 * sum(len(p) for p in pieces)
    # Through the livekit-agents stream: the first sentence is heard well before the whole
    # is synthesised (best of three, so one descheduled run on a busy machine is no failure).
    ratios = []
    for _ in range(3):
        pcm, first, total = await _timed(engine, _THREE)
        assert pcm.size / engine.sample_rate > 6.0
        ratios.append(first / total)
    assert min(ratios) < 0.5, ratios


async def test_hibari_speaks_at_once(models_settings) -> None:
    """The voice's own silence before each synthesis (about 280 ms, which every answer
    waited) is cut to a short lead-in; the first sound itself is kept."""
    for options in ({}, {"sample_rate": 48000}):
        engine = registry.build("tts", "hibari", options, settings=models_settings)
        for text in ("Sure, I can help you with that.", "Hello there.", "Two people, at eight?"):
            pcm, _, _ = await _timed(engine, text)
            loud = np.flatnonzero(np.abs(pcm.astype(np.float64)) > 0.003 * 32767)
            lead = loud[0] / engine.sample_rate
            assert 0.01 < lead < 0.08, (text, options, lead)
            assert pcm.size / engine.sample_rate > 0.5  # the words themselves are all there


async def test_hibari_resamples_to_48khz(models_settings) -> None:
    native = registry.build("tts", "hibari", {}, settings=models_settings)
    doubled = registry.build("tts", "hibari", {"sample_rate": 48000}, settings=models_settings)
    assert doubled.sample_rate == 48000
    text = "Your table for two is booked."
    low, _, _ = await _timed(native, text)
    high, _, _ = await _timed(doubled, text)
    # the same speech, twice the samples (the noise part of the voice differs between runs)
    seconds_low, seconds_high = low.size / 24000, high.size / 48000
    assert abs(seconds_high - seconds_low) < 0.05 * seconds_low
    spectrum = np.abs(np.fft.rfft(high.astype(np.float32)))
    freqs = np.fft.rfftfreq(high.size, 1 / 48000)
    # nothing above the 12 kHz Nyquist of the model's own rate but resampling residue
    assert spectrum[freqs > 12500].sum() < 0.01 * spectrum.sum()


async def test_hibari_speed_and_volume_apply(models_settings) -> None:
    text = "Please call me back tomorrow morning about the delivery."
    normal, _, _ = await _timed(registry.build("tts", "hibari", {}, settings=models_settings), text)
    fast_quiet, _, _ = await _timed(
        registry.build("tts", "hibari", {"speed": 1.5, "volume": 0.5}, settings=models_settings),
        text,
    )
    assert fast_quiet.size < 0.8 * normal.size  # 1.5x faster: about 2/3 of the samples
    rms = [float(np.sqrt(np.mean(p.astype(np.float64) ** 2))) for p in (normal, fast_quiet)]
    assert 0.3 < rms[1] / rms[0] < 0.7, rms  # half the gain (the voice's noise part varies)


def test_hibari_refuses_a_corrupt_model_file(tmp_path: Path) -> None:
    """A copy of the installed package with one byte of its voice model changed is refused
    before onnxruntime reads it, with the command that repairs it."""
    import hibari

    package = tmp_path / "site" / "hibari"
    shutil.copytree(Path(hibari.__file__).parent, package)
    model = package / "assets" / "hibari.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    script = textwrap.dedent(
        f"""
        import hibari
        assert hibari.__file__.startswith({str(tmp_path)!r}), hibari.__file__
        from thinnest.config import Settings
        from thinnest.errors import ConfigError
        from thinnest.providers import registry
        try:
            registry.build("tts", "hibari", {{}}, settings=Settings(data_dir={str(tmp_path)!r}))
        except ConfigError as exc:
            print("refused", exc.code, exc.message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused model_hash_mismatch"), done.stdout
    assert str(model) in done.stdout and "pip install --force-reinstall hibari-tts==0.2.1" in (
        done.stdout
    )


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        ({"voice": "emma"}, "providers.tts.options.voice", "'heart'"),
        ({"speed": 3}, "providers.tts.options.speed", "less than or equal"),
        ({"threads": -1}, "providers.tts.options.threads", "greater than or equal"),
        ({"sample_rate": 22050}, "providers.tts.options.sample_rate", "24000"),
        ({"pitch": 50}, "providers.tts.options.pitch", "allowed:"),
    ],
    ids=["downloaded-voice", "speed", "threads", "sample-rate", "unknown-option"],
)
def test_hibari_refuses_bad_options(
    models_settings, options: dict, field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("tts", "hibari", options, settings=models_settings)
    assert err.value.field == field
    assert fragment in err.value.message
