"""Cloud STT ``deepgram``: livekit-plugins-deepgram (streaming WebSocket), key from settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key

__all__ = ["DeepgramOptions", "build", "check"]


class DeepgramOptions(BaseModel):
    """Options of the ``deepgram`` STT.

    Attributes:
        model: a Deepgram model name (``nova-3``, ``nova-2``, ...).
        language: BCP-47 language code.
        base_url: the listen endpoint; change it only for a proxy or a self-hosted Deepgram.
        smart_format: let Deepgram format numbers, dates and the like.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("nova-3", min_length=1, max_length=64)
    language: str = Field("en-US", min_length=2, max_length=16)
    base_url: str = Field("https://api.deepgram.com/v1/listen", pattern="^(https?|wss?)://")
    smart_format: bool = False


def check(options: DeepgramOptions, settings: Settings) -> None:
    """Refuse the provider when ``THINNEST_DEEPGRAM_API_KEY`` is not set."""
    require_key(settings, "deepgram_api_key", "deepgram")


def build(options: DeepgramOptions, settings: Settings) -> Any:
    """Factory of the ``deepgram`` STT: a ``livekit.plugins.deepgram.STT``."""
    deepgram = require("livekit.plugins.deepgram", extra="cloud", provider="deepgram")
    return deepgram.STT(
        model=options.model,
        language=options.language,
        base_url=options.base_url,
        smart_format=options.smart_format,
        api_key=require_key(settings, "deepgram_api_key", "deepgram"),
    )
