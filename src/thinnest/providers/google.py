"""Google providers: Cloud Speech STT ``google`` and Gemini LLM ``gemini`` (livekit-plugins-google).

Both authenticate with ``THINNEST_GOOGLE_API_KEY`` (for Cloud Speech through google-auth's
API-key credentials, so no service-account file is needed).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key

__all__ = ["GeminiOptions", "GoogleSTTOptions", "build_llm", "build_stt", "check"]


class GoogleSTTOptions(BaseModel):
    """Options of the ``google`` STT.

    Attributes:
        model: a Cloud Speech model (``latest_long``, ``chirp_2``, ...).
        languages: BCP-47 codes the speaker may use.
        location: the Cloud Speech region.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("latest_long", min_length=1, max_length=64)
    languages: list[str] = Field(default_factory=lambda: ["en-US"], min_length=1, max_length=4)
    location: str = Field("global", pattern="^[a-z0-9-]+$")


class GeminiOptions(BaseModel):
    """Options of the ``gemini`` LLM.

    Attributes:
        model: a Gemini model name.
        temperature: sampling temperature.
        max_output_tokens: cap on the answer's length.
        base_url: the Gemini API endpoint; change it only for a proxy or gateway.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("gemini-2.5-flash", min_length=1, max_length=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(None, ge=1, le=65536)
    base_url: str | None = Field(None, pattern="^https?://")


def check(options: BaseModel, settings: Settings) -> None:
    """Refuse Google providers when ``THINNEST_GOOGLE_API_KEY`` is not set."""
    require_key(settings, "google_api_key", "google")


def build_stt(options: GoogleSTTOptions, settings: Settings) -> Any:
    """Factory of the ``google`` STT: a ``livekit.plugins.google.STT``."""
    google = require("livekit.plugins.google", extra="cloud", provider="google")
    api_key = require("google.auth.api_key", extra="cloud", provider="google")
    return google.STT(
        model=options.model,
        languages=options.languages,
        location=options.location,
        credentials=api_key.Credentials(require_key(settings, "google_api_key", "google")),
    )


def build_llm(options: GeminiOptions, settings: Settings) -> Any:
    """Factory of the ``gemini`` LLM: a ``livekit.plugins.google.LLM``."""
    google = require("livekit.plugins.google", extra="cloud", provider="gemini")
    kwargs: dict[str, Any] = {}
    if options.temperature is not None:
        kwargs["temperature"] = options.temperature
    if options.max_output_tokens is not None:
        kwargs["max_output_tokens"] = options.max_output_tokens
    if options.base_url is not None:
        genai_types = require("google.genai.types", extra="cloud", provider="gemini")
        kwargs["http_options"] = genai_types.HttpOptions(base_url=options.base_url)
    return google.LLM(
        model=options.model,
        api_key=require_key(settings, "google_api_key", "gemini"),
        vertexai=False,
        **kwargs,
    )
