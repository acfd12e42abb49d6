"""Optional-dependency imports that fail with a message naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from thinnest.errors import ConfigError

__all__ = ["require"]


def require(module: str, *, extra: str, provider: str) -> ModuleType:
    """Import ``module`` or raise a :class:`ConfigError` naming the ``thinnest`` extra.

    Args:
        module: dotted module name of the vendor SDK.
        extra: the extra of ``thinnest`` that installs it.
        provider: the provider that needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the {provider} provider needs {module!r}: pip install 'thinnest[{extra}]'",
            code="provider_not_installed",
        ) from exc
