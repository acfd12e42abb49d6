"""Fallback TTS ``espeak``: the espeak-ng binary (Debian package ``espeak-ng``), as a subprocess.

Robotic but tiny and fast. espeak-ng is GPL-3.0 (a separate program, not linked), so the
default install leaves it out: ``scripts/setup.sh --piper`` installs it with piper.
Text goes in on stdin (never argv, so text starting with ``-`` is not an option); WAV comes
out on stdout and its PCM is streamed as it arrives.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import uuid
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts
from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ConfigError, ProviderError

__all__ = ["EspeakOptions", "EspeakTTS", "build", "check"]

SAMPLE_RATE = 22050  # what espeak-ng's voices produce
_HEADER = 44


class EspeakOptions(BaseModel):
    """Options of the ``espeak`` TTS.

    Attributes:
        voice: an espeak-ng voice name (``espeak-ng --voices``), e.g. ``en-us``, ``de``.
        words_per_minute: speaking rate.
        pitch: 0-99.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str = Field("en-us", pattern=r"^[A-Za-z0-9_+\-]{1,40}$")
    words_per_minute: int = Field(170, ge=80, le=450)
    pitch: int = Field(50, ge=0, le=99)


def _binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise ConfigError(
            "the espeak TTS needs the espeak-ng program, which is not on PATH here (GPL-3.0, "
            "so the default install leaves it out): run `scripts/setup.sh --piper` (or "
            "apt-get install espeak-ng), or choose the default TTS 'hibari'",
            code="provider_not_installed",
        )
    return path


class EspeakTTS(tts.TTS):
    """espeak-ng as a livekit-agents ``tts.TTS`` (non-streaming, streamed output)."""

    def __init__(self, *, options: EspeakOptions) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self._opts = options
        self._bin = _binary()

    @property
    def model(self) -> str:
        return f"espeak-ng/{self._opts.voice}"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class _EspeakStream(tts.ChunkedStream):
    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        opts = self._espeak._opts
        output_emitter.initialize(
            request_id=uuid.uuid4().hex,
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        proc = await asyncio.create_subprocess_exec(
            self._espeak._bin,
            "--stdout",
            "-v",
            opts.voice,
            "-s",
            str(opts.words_per_minute),
            "-p",
            str(opts.pitch),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            # One line: espeak-ng reads stdin line by line and would pause at newlines.
            proc.stdin.write(" ".join(self.input_text.split()).encode() + b"\n")
            proc.stdin.close()
            header = await proc.stdout.readexactly(_HEADER)
            if header[:4] != b"RIFF" or header[36:40] != b"data":
                raise ProviderError("espeak-ng wrote no WAV header", retryable=False)
            (rate,) = struct.unpack("<I", header[24:28])
            if rate != SAMPLE_RATE:
                raise ProviderError(f"espeak-ng wrote {rate} Hz audio", retryable=False)
            pending = b""
            while chunk := await proc.stdout.read(8192):
                pending += chunk
                whole = len(pending) - len(pending) % 2
                output_emitter.push(pending[:whole])
                pending = pending[whole:]
            stderr = await proc.stderr.read() if proc.stderr else b""
            if await proc.wait() != 0:
                raise ProviderError(
                    f"espeak-ng failed: {stderr.decode(errors='replace')}", retryable=False
                )
        except asyncio.IncompleteReadError as exc:
            stderr = await proc.stderr.read() if proc.stderr else b""
            raise ProviderError(
                f"espeak-ng produced no audio: {stderr.decode(errors='replace').strip()}",
                retryable=False,
            ) from exc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output_emitter.flush()


def check(options: EspeakOptions, settings: Settings) -> None:
    """espeak-ng is on PATH here: an agent that names espeak is refused when it is saved,
    not mid-call (the default install has no espeak-ng).

    Raises:
        ConfigError: the program is missing, with what to run.
    """
    _binary()


def build(options: EspeakOptions, settings: Settings) -> Any:
    """Factory of the ``espeak`` TTS."""
    return EspeakTTS(options=options)
