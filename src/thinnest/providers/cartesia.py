"""Cloud TTS ``cartesia``: livekit-plugins-cartesia (streaming WebSocket), key from settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key

__all__ = ["CartesiaOptions", "build", "check"]


class CartesiaOptions(BaseModel):
    """Options of the ``cartesia`` TTS.

    Attributes:
        model: a Cartesia model (``sonic-3``, ...).
        voice: a Cartesia voice id; default: the plugin's default voice.
        language: ISO 639-1 code.
        speed: speaking rate multiplier.
        base_url: API base URL; change it only for a proxy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("sonic-3", min_length=1, max_length=64)
    voice: str | None = Field(None, min_length=1, max_length=64)
    language: str = Field("en", min_length=2, max_length=8)
    speed: float | None = Field(None, ge=0.5, le=2.0)
    base_url: str = Field("https://api.cartesia.ai", pattern="^https?://")


def check(options: CartesiaOptions, settings: Settings) -> None:
    """Refuse the provider when ``THINNEST_CARTESIA_API_KEY`` is not set."""
    require_key(settings, "cartesia_api_key", "cartesia")


def build(options: CartesiaOptions, settings: Settings) -> Any:
    """Factory of the ``cartesia`` TTS: a ``livekit.plugins.cartesia.TTS``."""
    cartesia = require("livekit.plugins.cartesia", extra="cloud", provider="cartesia")
    # The options left unset keep the plugin's defaults.
    kwargs = options.model_dump(include={"voice", "speed"}, exclude_none=True)
    return cartesia.TTS(
        model=options.model,
        language=options.language,
        base_url=options.base_url,
        api_key=require_key(settings, "cartesia_api_key", "cartesia"),
        **kwargs,
    )
