"""What a JSON value from a caller may hold: text that can be stored and served back, at a
bounded depth. Request bodies and an agent's config build on :class:`StrictModel`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

from thinnest.contracts import jsonvalue

#: The deepest nesting of a free-form JSON object in a request (options, tool parameters,
#: ``context``; the context has its own, lower bound: ``Settings.max_context_depth``). Deeper
#: values cannot be served back (pydantic serialises about 255 levels).
MAX_JSON_DEPTH = 32


def storable(value: Any) -> Any:
    """Refuse what could be stored but not served back, anywhere in a value.

    A lone surrogate: JSON may spell one (``"\\ud800"``); pydantic refuses it only in a ``str``
    field with a length or pattern, not in a plain ``str``, a dict key or free-form JSON.
    U+0000: PostgreSQL's text columns and query parameters refuse it (a 500 there).
    ``NaN`` and ``Infinity``: Python's JSON parser reads them; they are not JSON.
    """
    where = jsonvalue.lone_surrogate_at(value)
    if where is not None:
        raise ValueError(
            f"holds a lone surrogate{_at(where)}: a \\ud800-\\udfff escape without its pair is "
            "not Unicode text"
        )
    where = jsonvalue.nul_at(value)
    if where is not None:
        raise ValueError(f"holds U+0000 (NUL){_at(where)}, which is not stored as text")
    where = jsonvalue.non_finite_at(value)
    if where is not None:
        raise ValueError(f"holds NaN or Infinity{_at(where)}, which JSON has no number for")
    return value


def _at(where: str) -> str:
    return f" (at {where[:80]})" if where else ""


def _bounded_depth(value: Any) -> Any:
    levels = jsonvalue.depth(value)
    if levels > MAX_JSON_DEPTH:
        raise ValueError(f"is nested {levels} levels deep; the limit is {MAX_JSON_DEPTH}")
    return value


#: A free-form JSON object from a request, at most MAX_JSON_DEPTH deep.
JsonObject = Annotated[dict[str, Any], BeforeValidator(_bounded_depth)]


class StrictModel(BaseModel):
    """A request body: no unknown fields, and nothing that could not be served back."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable_only(cls, value: Any) -> Any:
        return storable(value)
