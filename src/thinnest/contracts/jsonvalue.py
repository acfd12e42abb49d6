"""JSON values that survive a round trip: valid Unicode text, bounded depth.

A JSON text may spell a lone surrogate (``"\\ud800"``) and Python's ``json`` reads it into a
``str`` that no UTF-8 encoder accepts, so a value that was stored with one cannot be served
back. Deep nesting is the other trap: pydantic serialises at most about 255 levels. And
Python reads ``NaN`` and ``Infinity``, which are not JSON (PostgreSQL refuses to store them).
The API refuses all three at its edge (:func:`lone_surrogate_at`, :func:`depth`,
:func:`non_finite_at`); the store reads and writes every JSON column through :func:`loads` /
:func:`dumps`, which repair what an older version stored (a lone surrogate becomes U+FFFD; a
NaN, an infinity or a container deeper than :data:`MAX_STORED_DEPTH` becomes ``null``), so no
stored row can break a read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_STORED_DEPTH",
    "clean",
    "depth",
    "dumps",
    "clean_text",
    "loads",
    "lone_surrogate_at",
    "non_finite_at",
    "nul_at",
]

#: Containers nested deeper than this are dropped on read and write (the API allows far less).
MAX_STORED_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _has_nul(text: str) -> bool:
    return "\x00" in text


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and U+0000 (which no PostgreSQL text column holds)
    replaced by U+FFFD."""
    if _bad_text(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text.replace("\x00", "\ufffd") if _has_nul(text) else text


def _text_at(value: Any, bad: Callable[[str], bool], path: str) -> str | None:
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if bad(item):
                return clean_text(where)
        elif isinstance(item, dict):
            for key, child in item.items():
                here = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and bad(key):
                    return clean_text(here)
                stack.append((here, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}.{i}" if where else str(i), c) for i, c in enumerate(item))
    return None


def lone_surrogate_at(value: Any, path: str = "") -> str | None:
    """The path (``a.b.0``) of the first string or key with a lone surrogate, or ``None``."""
    return _text_at(value, _bad_text, path)


def nul_at(value: Any, path: str = "") -> str | None:
    """The path of the first string or key holding U+0000, or ``None``: valid JSON, but no
    PostgreSQL text column or query parameter takes it."""
    return _text_at(value, _has_nul, path)


def non_finite_at(value: Any, path: str = "") -> str | None:
    """The path of the first NaN or infinity (Python's ``json`` reads ``NaN`` and ``Infinity``,
    which are not JSON: PostgreSQL refuses them), or ``None``."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return where
        elif isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), c) for k, c in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}.{i}" if where else str(i), c) for i, c in enumerate(item))
    return None


def depth(value: Any) -> int:
    """How many containers are nested in ``value``: ``{}`` is 1, ``{"a": [1]}`` is 2."""
    deepest = 0
    stack: list[tuple[int, Any]] = [(1, value)]
    while stack:
        level, item = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((level + 1, c) for c in children)
    return deepest


def clean(value: Any, max_depth: int = MAX_STORED_DEPTH) -> Any:
    """``value`` with lone surrogates replaced by U+FFFD, and NaN, infinities and containers
    below ``max_depth`` replaced by ``None``."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _bad_text(value) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if max_depth <= 0 and isinstance(value, dict | list | tuple):
        return None
    if isinstance(value, dict):
        return {clean(k, 1): clean(v, max_depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, max_depth - 1) for v in value]
    return value


def dumps(value: Any) -> str:
    """The JSON text a column stores."""
    return json.dumps(clean(value))


def loads(text: str | bytes) -> Any:
    """A stored JSON text, repaired (see the module docstring)."""
    return clean(json.loads(text))
