"""What the clients of the shared model service (``thinnest models``) have in common: where
it is, and whether it can serve a call now."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from thinnest.config import Settings
from thinnest.providers._service import tls_context, warm_clients

__all__ = ["models_status", "tls_context", "warm_clients"]


def models_status(settings: Settings) -> str:
    """The state of the model services this worker's calls use: ``""`` without any (models
    in the job processes), ``"ok"``, or why they cannot serve a call (for the API's 503)."""
    if not settings.models_url:
        return ""
    url = f"{settings.models_url}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            answer.read()
        return "ok"
    except urllib.error.HTTPError as exc:  # 503: a part is down or still loading
        try:
            parts = json.loads(exc.read()).get("services", {})
            down = ", ".join(f"{k} {v}" for k, v in parts.items() if v != "ok")
        except (ValueError, AttributeError):
            down = f"HTTP {exc.code}"
        return f"{settings.models_url}: {down}"[:200]
    except (OSError, ValueError) as exc:
        return f"{settings.models_url} unreachable: {exc}"[:200]
