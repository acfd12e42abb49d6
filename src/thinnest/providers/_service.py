"""What the clients of the shared model service (``THINNEST_MODELS_URL``) share."""

from __future__ import annotations

import json

import httpx
from livekit.agents import APIStatusError

from thinnest.config import Settings

__all__ = ["service_error", "timeout"]


def timeout(settings: Settings) -> httpx.Timeout:
    """``provider_timeout`` to read an answer; a down service is known within 2 s."""
    return httpx.Timeout(settings.provider_timeout, connect=min(2.0, settings.provider_timeout))


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
