"""Cloud LLM ``openai``: any OpenAI-compatible chat-completions endpoint (livekit-plugins-openai).

Covers OpenAI, Groq, Together, vLLM and a llama.cpp server: ``base_url`` (option, else
``THINNEST_OPENAI_BASE_URL``) plus ``THINNEST_OPENAI_API_KEY`` and a ``model``. A key is
required unless the endpoint is a custom one (local servers often need none).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ConfigError
from thinnest.providers._extras import require

__all__ = ["OpenAIOptions", "build", "check"]


class OpenAIOptions(BaseModel):
    """Options of the ``openai`` LLM.

    Attributes:
        model: the model name the endpoint knows.
        base_url: the endpoint (``http://host:8080/v1``); default ``THINNEST_OPENAI_BASE_URL``,
            else OpenAI itself.
        temperature: sampling temperature.
        max_completion_tokens: cap on the answer's length.
        max_retries: retries inside the SDK before the error reaches the session (which
            retries by its own ``conn_options``, whose ``timeout`` bounds each request).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("gpt-4.1-mini", min_length=1, max_length=128)
    base_url: str | None = Field(None, pattern="^https?://")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_completion_tokens: int | None = Field(None, ge=1, le=131072)
    max_retries: int = Field(0, ge=0, le=5)


def _endpoint(options: OpenAIOptions, settings: Settings) -> tuple[str | None, str | None]:
    base_url = options.base_url or settings.openai_base_url
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return base_url, key or None


def check(options: OpenAIOptions, settings: Settings) -> None:
    """Refuse the provider when it would call OpenAI itself without a key."""
    base_url, key = _endpoint(options, settings)
    if key is None and base_url is None:
        raise ConfigError(
            "the openai provider needs THINNEST_OPENAI_API_KEY, or a base_url of an "
            "OpenAI-compatible endpoint that needs no key",
            code="provider_key_missing",
        )


def build(options: OpenAIOptions, settings: Settings) -> Any:
    """Factory of the ``openai`` LLM: a ``livekit.plugins.openai.LLM``."""
    check(options, settings)
    openai_plugin = require("livekit.plugins.openai", extra="cloud", provider="openai")
    base_url, key = _endpoint(options, settings)
    # The options left unset keep the plugin's defaults.
    kwargs = options.model_dump(include={"temperature", "max_completion_tokens"}, exclude_none=True)
    if base_url is not None:
        kwargs["base_url"] = base_url
    # The plugin's HTTP client is httpx2's, which takes an httpx.Timeout for one number (a
    # TypeError at the first request that uses it). Chat sends the session's conn_options
    # timeout with each request; this one bounds any request sent without its own.
    httpx2 = require("httpx2", extra="cloud", provider="openai")
    kwargs["timeout"] = httpx2.Timeout(settings.provider_timeout, connect=5.0)
    return openai_plugin.LLM(
        model=options.model,
        # The SDK refuses an empty key even for endpoints that ignore it.
        api_key=key or "no-key",
        max_retries=options.max_retries,
        **kwargs,
    )
