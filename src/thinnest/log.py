"""The package logger, log setup, and the redaction that keeps secrets out of every log line.

Subpackages log to ``thinnest.<pkg>``. Importing this module (every Thinnest process does:
API, worker and its job processes, the dev stack) installs a log-record factory that redacts
each record as it is made, whichever library logs it and whichever handler writes it:
uvicorn logs each WebSocket handshake with its query string (``WebSocket /ws/<id>?token=…
[accepted]``) through its own handlers, and anyone holding a session token can take over
that call. Redacted are the values of query strings, JWTs (LiveKit tokens), Thinnest API
keys (all but the prefix that ``keys list`` shows), ``Bearer`` credentials and the values of
``token=``/``secret=``/``password=``-like fields. ``configure`` also puts a
:class:`RedactSecrets` filter on the root handlers, for records rebuilt from another
process's log queue (a job process's), which do not pass through the factory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("thinnest")

REDACTED = "[redacted]"

_SECRET_NAMES = r"(?:access_token|refresh_token|id_token|token|api_key|apikey|secret|password)"
_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # The values of a query string (``/ws/session_…?token=…&sample_rate=…``).
    (
        re.compile(r"\?([\w.~%+-]+=[^\s\"'<>#]*)"),
        lambda m: (
            "?"
            + "&".join(
                f"{pair.split('=', 1)[0]}={REDACTED}" if "=" in pair else REDACTED
                for pair in m.group(1).split("&")
            )
        ),
    ),
    # JSON Web Tokens: header.payload.signature, base64url; every LiveKit token is one.
    (re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), REDACTED),
    # Thinnest API keys: the 12-character prefix stays (``keys list`` shows it).
    (re.compile(r"\b(tn_(?:sk|pk)_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{20,}"), r"\1…" + REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+(?!\[redacted)[^\s\"',;]+"), r"\1 " + REDACTED),
    # An ``Authorization`` header's value, whatever its scheme.
    (
        re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?!\[redacted)[^\"'\n,;}]+"),
        r"\1" + REDACTED,
    ),
    # ``token=…`` elsewhere (a form body, a header dump) and ``"token": "…"`` in JSON.
    (re.compile(rf"(?i)\b({_SECRET_NAMES})=(?!\[redacted)[^\s&\"'<>#,;]+"), r"\1=" + REDACTED),
    (
        re.compile(rf"(?i)([\"']{_SECRET_NAMES}[\"']\s*:\s*[\"'])(?!\[redacted)[^\"']+"),
        r"\1" + REDACTED,
    ),
]


def redact(text: str) -> str:
    """``text`` with every token, key and query-string value replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    # Numbers stay numbers (``%d`` needs them); anything else is compared by its text, and
    # only a value that held a secret is replaced (by its redacted text).
    if value is None or isinstance(value, int | float):
        return value
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ fails the same way when the record is formatted
        return value
    clean = redact(text)
    return value if clean == text else clean


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact ``record`` in place: its message, its arguments and its traceback text."""
    args = record.args
    if not args:
        record.msg = _redact_value(record.msg)
    elif _redact_value(record.msg) is not record.msg:
        # A secret in the format string itself (``"…?token=%s"``): redacting the template
        # alone would leave its placeholders and arguments at odds, so format it now.
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:
            record.msg, record.args = _redact_value(record.msg), ()
    elif isinstance(args, Mapping):
        record.args = {k: _redact_value(v) for k, v in args.items()}
    else:
        record.args = tuple(_redact_value(a) for a in args)
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactSecrets(logging.Filter):
    """A handler filter that redacts each record passing through (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_redaction() -> None:
    """Make every log record of this process redacted when it is created (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_thinnest_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    factory._thinnest_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure(level: str = "INFO") -> None:
    """Send Thinnest's logs (and uvicorn's) to stderr in one plain format, redacted."""
    install_redaction()
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


install_redaction()
