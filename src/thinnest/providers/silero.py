"""Offline VAD ``silero``: livekit-plugins-silero, whose ONNX model ships in the package."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.providers._extras import require

__all__ = ["SileroOptions", "build"]


class SileroOptions(BaseModel):
    """Options of the ``silero`` VAD (seconds and probabilities).

    Attributes:
        min_speech_duration: speech shorter than this does not start a turn.
        min_silence_duration: silence that ends a speech segment.
        prefix_padding_duration: audio kept before the detected start of speech.
        activation_threshold: speech probability that counts as speech.
        sample_rate: the rate the model runs at.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_speech_duration: float = Field(0.05, ge=0.0, le=2.0)
    min_silence_duration: float = Field(0.55, ge=0.05, le=5.0)
    prefix_padding_duration: float = Field(0.5, ge=0.0, le=2.0)
    activation_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    sample_rate: Literal[8000, 16000] = 16000


def build(options: SileroOptions, settings: Settings) -> Any:
    """Factory of the ``silero`` VAD: a ``livekit.plugins.silero.VAD``."""
    silero = require("livekit.plugins.silero", extra="offline", provider="silero")
    return silero.VAD.load(
        min_speech_duration=options.min_speech_duration,
        min_silence_duration=options.min_silence_duration,
        prefix_padding_duration=options.prefix_padding_duration,
        activation_threshold=options.activation_threshold,
        sample_rate=options.sample_rate,
        force_cpu=True,
    )
