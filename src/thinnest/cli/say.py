"""``thinnest say``: text to a WAV file with the default offline voice (hibari).

What a caller's question for ``thinnest call --wav`` is made with, on any install: hibari is
in the default install (Apache-2.0), where espeak-ng is not.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Annotated

import typer

from thinnest.cli.output import out_line
from thinnest.errors import ValidationError


def say(
    text: Annotated[str, typer.Argument(help="what to say")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the WAV file to write")],
    speed: Annotated[
        float, typer.Option(min=0.5, max=2.0, help="speaking rate; 1.0 is the voice's own")
    ] = 1.0,
) -> None:
    """Say TEXT into a WAV file (16-bit mono, 24 kHz) with the offline hibari voice."""
    from thinnest.calls import check_out
    from thinnest.providers.hibari import HibariOptions, HibariTTS

    if not text.strip():
        raise ValidationError("nothing to say: TEXT is empty", field="text")
    check_out(out)
    voice = HibariTTS(options=HibariOptions(speed=speed))
    pcm = b"".join(voice.synthesize_pcm(" ".join(text.split())))
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(voice.sample_rate)
        wav.writeframes(pcm)
    seconds = len(pcm) / 2 / voice.sample_rate
    out_line(f"{out}: {seconds:.2f} s of speech, {voice.sample_rate} Hz")
