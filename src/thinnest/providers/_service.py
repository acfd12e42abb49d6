"""What the clients of the shared model service (``THINNEST_MODELS_URL``) share."""

from __future__ import annotations

import functools
import json
import ssl

import httpx
from livekit.agents import APIStatusError

from thinnest.config import Settings

__all__ = ["service_error", "timeout", "tls_context", "warm_clients"]


def timeout(settings: Settings) -> httpx.Timeout:
    """``provider_timeout`` to read an answer; a down service is known within 2 s."""
    return httpx.Timeout(settings.provider_timeout, connect=min(2.0, settings.provider_timeout))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for HTTP clients (a service behind ``https``).

    httpx builds one for every client it makes, loading the CA bundle: 0.1-0.3 s of CPU,
    which on a call's event loop stalls its audio (measured 307 ms at a greeting). The
    prewarm makes it (:func:`warm_clients`); every client reuses it.
    """
    return httpx.create_ssl_context()


def warm_clients() -> None:
    """Do, before any call, what a call's first request to the service would do on its event
    loop: the TLS context, and the OpenAI SDK's chat modules, imported lazily on first use
    (337 ms of blocked loop at a call's first answer, measured)."""
    tls_context()
    try:
        import openai.resources.chat.completions  # noqa: F401
    except ImportError:  # no cloud extra: the LLM client is not the SDK's
        pass


def service_error(what: str, status: int, body: bytes) -> APIStatusError:
    """The livekit-agents error of a service's error answer (its JSON message, if any).

    4xx (but 408 and 429) is final; 5xx (an overloaded service's 503) is retried.
    """
    message = body.decode(errors="replace")[:300]
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return APIStatusError(
        f"{what}: the model service answered {status}: {message}", status_code=status, body=body
    )
