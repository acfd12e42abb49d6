"""Cloud API keys from settings: present at save time, handed to the plugin at build time."""

from __future__ import annotations

from thinnest.config import Settings
from thinnest.errors import ConfigError

__all__ = ["require_key"]


def require_key(settings: Settings, field: str, provider: str) -> str:
    """The secret ``settings.<field>``, or a :class:`ConfigError` naming the variable to set.

    Args:
        settings: process settings.
        field: the ``Settings`` field (``deepgram_api_key``).
        provider: the provider's name, for the message.
    """
    secret = getattr(settings, field)
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ConfigError(
            f"the {provider} provider needs an API key: set THINNEST_{field.upper()} on the "
            "API and the voice engine workers",
            code="provider_key_missing",
        )
    return value
