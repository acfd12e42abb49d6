"""The exception hierarchy of Thinnest: everything we raise derives from ``ThinnestError``.

::

    ThinnestError
    ├── ConfigError                 settings or an agent's configuration is wrong
    ├── AuthError                   missing, malformed, revoked or unknown credentials
    ├── ForbiddenError              valid credentials, not allowed to do this (publishable keys)
    ├── NotFoundError               no such resource (or not the caller's: never leak existence)
    ├── ConflictError               the resource exists already / state forbids the change
    ├── ValidationError             a caller's input is invalid; names the field
    ├── RateLimitError              too many requests; carries ``retry_after`` seconds
    ├── UnavailableError            a dependency (LiveKit, database, worker) cannot be reached
    └── ProviderError(retryable)    an STT / LLM / TTS vendor failed
        ├── ProviderStatusError     the vendor answered with an HTTP/WebSocket error status
        └── ProviderConnectionError the vendor could not be reached
            └── ProviderTimeoutError

Only ``thinnest.api`` turns these into HTTP answers (see ``api/errors.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ThinnestError",
    "UnavailableError",
    "ValidationError",
    "field_of",
]


class ThinnestError(Exception):
    """Base class of every error Thinnest raises.

    Attributes:
        message: a sentence for a human, saying what to do where possible.
        code: a stable machine-readable code (``snake_case``).
        field: the input field at fault, when there is one.
    """

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field


class ConfigError(ThinnestError):
    code = "config_error"


class AuthError(ThinnestError):
    code = "unauthorized"


class ForbiddenError(ThinnestError):
    code = "forbidden"


class NotFoundError(ThinnestError):
    code = "not_found"


class ConflictError(ThinnestError):
    code = "conflict"


class ValidationError(ThinnestError):
    code = "invalid_request"

    @classmethod
    def from_pydantic(cls, exc: Any, *, prefix: str = "", default: str = "body") -> ValidationError:
        """The first error of a ``pydantic.ValidationError`` as ours, naming its field."""
        errors = exc.errors(include_url=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid value"}
        field = field_of(first.get("loc", ()), prefix=prefix, default=default)
        return cls(f"{field}: {first.get('msg', 'invalid value')}", field=field)


def field_of(loc: Sequence[Any], *, prefix: str = "", default: str = "body") -> str:
    """The dotted path of a pydantic error's location (``("tools", 0, "url")`` is
    ``tools.0.url``), under ``prefix``; ``default`` where the whole value is at fault."""
    path = ".".join(str(part) for part in loc)
    if prefix:
        return f"{prefix}.{path}" if path else prefix
    return path or default


class RateLimitError(ThinnestError):
    """Too many requests; ``retry_after`` says after how many seconds to try again."""

    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: str | None = None,
        field: str | None = None,
    ):
        super().__init__(message, code=code, field=field)
        self.retry_after = retry_after


class UnavailableError(ThinnestError):
    """A dependency (LiveKit, a voice engine worker) cannot take the request now;
    ``retry_after``, when known, says after how many seconds to try again."""

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, field=field, code=code)
        self.retry_after = retry_after


class ProviderError(ThinnestError):
    """A vendor (STT, LLM, TTS) failed. ``retryable`` is decided once, where it is raised."""

    code = "provider_error"

    def __init__(self, message: str, *, retryable: bool, code: str | None = None):
        super().__init__(message, code=code)
        self.retryable = retryable


class ProviderStatusError(ProviderError):
    """The vendor answered with an error status; 4xx is final except 408 and 429."""

    def __init__(self, message: str, *, status_code: int, code: str | None = None):
        retryable = status_code >= 500 or status_code in (408, 429)
        super().__init__(message, retryable=retryable, code=code)
        self.status_code = status_code


class ProviderConnectionError(ProviderError):
    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message, retryable=True, code=code)


class ProviderTimeoutError(ProviderConnectionError):
    pass
