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
from thinnest.store import keys
from thinnest.store.db import Database
from thinnest.store.models import ApiKey


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


def _any_key(request: Request) -> ApiKey:
    # A session of its own, closed before the route runs: holding it open for the whole
    # request while the route takes a second connection deadlocked the pool under load
    # (every request holding one connection and waiting for another).
    with _database(request).session() as db:
        key = keys.authenticate(db, _bearer(request))
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
