"""FastAPI dependencies as ``Annotated`` aliases: settings, database, LiveKit, the caller's key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from thinnest.api.limits import RateLimits
from thinnest.config import Settings
from thinnest.errors import ForbiddenError
from thinnest.livekit.rooms import LiveKitService
from thinnest.store import console, keys
from thinnest.store.db import Database
from thinnest.store.models import ApiKey, ConsoleSession


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _db_session(request: Request) -> Iterator[Session]:
    with _database(request).session() as session:
        yield session


def _livekit(request: Request) -> LiveKitService:
    service: LiveKitService = request.app.state.livekit
    return service


def _rate_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


#: The operator console's sign-in cookie (HttpOnly, SameSite=Strict): a random token.
CONSOLE_COOKIE = "thinnest_console"
#: The header a console page sends its sign-in's CSRF token in, on every write.
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_csrf(row: ConsoleSession, request: Request) -> None:
    """A console write must carry its sign-in's CSRF token: the cookie alone, which the
    browser adds to any request, proves nothing."""
    if not console.csrf_matches(row, request.headers.get(CSRF_HEADER)):
        raise ForbiddenError(
            "a console request that changes something must send the sign-in's CSRF token "
            "in the X-CSRF-Token header",
            code="csrf_failed",
            field=CSRF_HEADER,
        )


def _console_key(db: Session, request: Request, token: str) -> ApiKey:
    """The key behind the console's sign-in cookie."""
    row = console.authenticate(db, token)
    if request.method not in _SAFE_METHODS:
        check_csrf(row, request)
    return row.key


def _any_key(request: Request) -> ApiKey:
    # A session of its own, closed before the route runs: holding it open for the whole
    # request while the route takes a second connection deadlocked the pool under load
    # (every request holding one connection and waiting for another).
    bearer = _bearer(request)
    cookie = request.cookies.get(CONSOLE_COOKIE) if bearer is None else None
    with _database(request).session() as db:
        if cookie:
            key = _console_key(db, request, cookie)
        else:
            key = keys.authenticate(db, bearer)
        keys.touch(db, key)
    return key


def _current_key(key: Annotated[ApiKey, Depends(_any_key)]) -> ApiKey:
    """A secret key: publishable keys only start sessions (``POST /voice/start``)."""
    if key.kind != keys.SECRET:
        raise ForbiddenError(
            "a publishable key can only start sessions (POST /voice/start); "
            "use a secret API key from your server for this",
            code="publishable_key_not_allowed",
        )
    return key


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]
DbSession = Annotated[Session, Depends(_db_session)]
LiveKitDep = Annotated[LiveKitService, Depends(_livekit)]
RateLimitsDep = Annotated[RateLimits, Depends(_rate_limits)]
CurrentKey = Annotated[ApiKey, Depends(_current_key)]
#: A secret or a publishable key (only ``POST /voice/start`` takes both).
SecretOrPublishableKey = Annotated[ApiKey, Depends(_any_key)]
