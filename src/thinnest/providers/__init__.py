"""Providers of the voice pipeline: STT, LLM, TTS, VAD and turn detection, chosen by name.

See :mod:`thinnest.providers.registry` for the API (``validate``, ``build``, ``names``),
:mod:`thinnest.contracts.agent` for the kinds and the defaults, and
:mod:`thinnest.providers.models` for the offline model cache.
"""

from __future__ import annotations

from thinnest.providers.registry import (
    ConversationAware,
    Prefillable,
    Provider,
    build,
    names,
    validate,
)

__all__ = [
    "ConversationAware",
    "Prefillable",
    "Provider",
    "build",
    "names",
    "validate",
]
