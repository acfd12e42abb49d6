"""Cloud TTS ``elevenlabs``: livekit-plugins-elevenlabs (streaming), key from settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key

__all__ = ["ElevenLabsOptions", "build", "check"]


class ElevenLabsOptions(BaseModel):
    """Options of the ``elevenlabs`` TTS.

    Attributes:
        voice_id: an ElevenLabs voice id; default: the plugin's default voice.
        model: an ElevenLabs model (``eleven_turbo_v2_5``, ``eleven_flash_v2_5``, ...).
        language: ISO 639-1 code, for multilingual models.
        encoding: audio format ElevenLabs sends (``pcm_*`` needs no decoding).
        base_url: API base URL; change it only for a proxy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice_id: str | None = Field(None, pattern="^[A-Za-z0-9]{1,64}$")
    model: str = Field("eleven_turbo_v2_5", min_length=1, max_length=64)
    language: str | None = Field(None, min_length=2, max_length=8)
    encoding: Literal["mp3_22050_32", "mp3_44100_128", "pcm_16000", "pcm_22050", "pcm_24000"] = (
        "mp3_22050_32"
    )
    base_url: str | None = Field(None, pattern="^https?://")


def check(options: ElevenLabsOptions, settings: Settings) -> None:
    """Refuse the provider when ``THINNEST_ELEVENLABS_API_KEY`` is not set."""
    require_key(settings, "elevenlabs_api_key", "elevenlabs")


def build(options: ElevenLabsOptions, settings: Settings) -> Any:
    """Factory of the ``elevenlabs`` TTS: a ``livekit.plugins.elevenlabs.TTS``."""
    elevenlabs = require("livekit.plugins.elevenlabs", extra="cloud", provider="elevenlabs")
    # The options left unset keep the plugin's defaults.
    kwargs = options.model_dump(include={"voice_id", "language", "base_url"}, exclude_none=True)
    return elevenlabs.TTS(
        model=options.model,
        encoding=options.encoding,
        api_key=require_key(settings, "elevenlabs_api_key", "elevenlabs"),
        **kwargs,
    )
