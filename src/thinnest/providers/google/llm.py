"""The ``gemini`` LLM: livekit-plugins-google's ``LLM`` on the Gemini API."""

from __future__ import annotations

from typing import Any

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key
from thinnest.providers.google.options import GeminiOptions

__all__ = ["build_llm"]


def build_llm(options: GeminiOptions, settings: Settings) -> Any:
    """Factory of the ``gemini`` LLM: a ``livekit.plugins.google.LLM``."""
    google = require("livekit.plugins.google", extra="cloud", provider="gemini")
    # The options left unset keep the plugin's defaults.
    kwargs = options.model_dump(include={"temperature", "max_output_tokens"}, exclude_none=True)
    if options.base_url is not None:
        genai_types = require("google.genai.types", extra="cloud", provider="gemini")
        kwargs["http_options"] = genai_types.HttpOptions(base_url=options.base_url)
    return google.LLM(
        model=options.model,
        api_key=require_key(settings, "google_api_key", "gemini"),
        vertexai=False,
        **kwargs,
    )
