"""Owners and API keys: random prefixed keys, shown once, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from thinnest.errors import AuthError, NotFoundError
from thinnest.store.models import ApiKey, Owner, utcnow

SECRET_KEY_PREFIX = "tn_sk_"
_KEY_RE = re.compile(r"^tn_(sk|pk)_[A-Za-z0-9_-]{32,64}$")


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def get_or_create_owner(db: Session, name: str) -> Owner:
    owner = db.scalars(select(Owner).where(Owner.name == name)).first()
    if owner is None:
        owner = Owner(name=name)
        db.add(owner)
        db.flush()
    return owner


def get_owner(db: Session, name: str) -> Owner:
    owner = db.scalars(select(Owner).where(Owner.name == name)).first()
    if owner is None:
        raise NotFoundError(f"no owner named {name!r}", code="owner_not_found", field="owner")
    return owner


def create_key(db: Session, owner: Owner, *, name: str = "") -> tuple[ApiKey, str]:
    """Create a secret key for ``owner``. Returns the row and the plaintext (shown once)."""
    plaintext = SECRET_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        owner_id=owner.id,
        name=name,
        kind="secret",
        prefix=plaintext[: len(SECRET_KEY_PREFIX) + 6],
        key_hash=hash_key(plaintext),
    )
    db.add(row)
    db.flush()
    return row, plaintext


def authenticate(db: Session, plaintext: str | None) -> ApiKey:
    """Return the live key matching ``plaintext`` or raise :class:`AuthError`."""
    if not plaintext:
        raise AuthError(
            "missing API key: send `Authorization: Bearer <api_key>`", code="missing_api_key"
        )
    if not _KEY_RE.match(plaintext):
        raise AuthError("malformed API key", code="invalid_api_key")
    digest = hash_key(plaintext)
    row = db.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
    # The lookup is by a hash of a 256-bit secret; the comparison itself is constant-time.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise AuthError("invalid API key", code="invalid_api_key")
    if row.revoked_at is not None:
        raise AuthError("this API key has been revoked", code="revoked_api_key")
    return row


def touch(db: Session, key: ApiKey) -> None:
    key.last_used_at = utcnow()


def list_keys(db: Session, owner_id: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if owner_id is not None:
        stmt = stmt.where(ApiKey.owner_id == owner_id)
    return list(db.scalars(stmt))


def revoke_key(db: Session, key_id: str, owner_id: str | None = None) -> ApiKey:
    """Revoke by id (or by its displayed prefix); idempotent."""
    stmt = select(ApiKey).where((ApiKey.id == key_id) | (ApiKey.prefix == key_id))
    if owner_id is not None:
        stmt = stmt.where(ApiKey.owner_id == owner_id)
    rows = list(db.scalars(stmt))
    if len(rows) != 1:
        raise NotFoundError(f"no API key {key_id!r}", code="key_not_found", field="key_id")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
