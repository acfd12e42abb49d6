"""The operator console's sign-ins: a random token for the browser's cookie, its SHA-256 here.

A sign-in is opened with a secret API key and lasts until it expires, is signed out, or its
key is revoked. Each carries a CSRF token that the page must send back on every write.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from thinnest.errors import AuthError
from thinnest.store.keys import hash_key
from thinnest.store.models import ApiKey, ConsoleSession, utcnow

#: Signed-out and expired sign-ins are deleted this long after they ended.
KEEP_ENDED = timedelta(days=7)


def open_session(db: Session, key: ApiKey, *, hours: float) -> tuple[ConsoleSession, str]:
    """A new sign-in for ``key`` (always a fresh token: a session id is never carried over
    from before the sign-in) and the token for the cookie, which is not stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(
        token_hash=hash_key(token),
        owner_id=key.owner_id,
        api_key_id=key.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    db.add(row)
    _prune(db, now)
    db.flush()
    return row, token


def authenticate(db: Session, token: str | None) -> ConsoleSession:
    """The live sign-in whose cookie holds ``token``, or :class:`AuthError`."""
    if not token:
        raise AuthError(
            "sign in to the console first (or send `Authorization: Bearer <api_key>`)",
            code="missing_api_key",
        )
    digest = hash_key(token)
    row = db.scalars(select(ConsoleSession).where(ConsoleSession.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise AuthError("console session not found: sign in again", code="console_signed_out")
    if row.revoked_at is not None:
        raise AuthError("this console session was signed out", code="console_signed_out")
    if row.expires_at <= utcnow():
        raise AuthError("this console session has expired: sign in again", code="console_expired")
    if row.key.revoked_at is not None:
        raise AuthError(
            "the API key this console session was opened with has been revoked",
            code="revoked_api_key",
        )
    return row


def csrf_matches(row: ConsoleSession, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(row.csrf_token.encode(), (sent or "").encode())


def sign_out(db: Session, token: str | None) -> bool:
    """End the sign-in whose cookie holds ``token``; whether there was a live one."""
    if not token:
        return False
    result = db.execute(
        update(ConsoleSession)
        .where(ConsoleSession.token_hash == hash_key(token), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _prune(db: Session, now: datetime) -> None:
    cutoff = now - KEEP_ENDED
    db.execute(
        delete(ConsoleSession)
        .where((ConsoleSession.expires_at < cutoff) | (ConsoleSession.revoked_at < cutoff))
        .execution_options(synchronize_session=False)
    )
