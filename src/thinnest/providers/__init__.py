"""Providers of the voice pipeline: STT, LLM, TTS, VAD and turn detection, chosen by name.

See :mod:`thinnest.providers.registry` for the API (``validate``, ``build``, ``names``,
``DEFAULTS``) and :mod:`thinnest.providers.models` for the offline model cache.
"""

from __future__ import annotations

from thinnest.providers.registry import (
    DEFAULTS,
    KINDS,
    ConversationAware,
    Prefillable,
    Provider,
    build,
    names,
    validate,
)

__all__ = [
    "DEFAULTS",
    "KINDS",
    "ConversationAware",
    "Prefillable",
    "Provider",
    "build",
    "names",
    "validate",
]
