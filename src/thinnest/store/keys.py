"""Owners and API keys: random prefixed keys, shown once, stored as SHA-256, revocable.

Two kinds: ``secret`` keys (``tn_sk_…``) for servers, and ``publishable`` keys (``tn_pk_…``)
that may sit in a web page: they name the agents they may start and the origins they may be
used from (see :func:`create_publishable_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from thinnest.errors import AuthError, NotFoundError, ValidationError
from thinnest.store import agents
from thinnest.store.models import ApiKey, Owner, utcnow

SECRET_KEY_PREFIX = "tn_sk_"
PUBLISHABLE_KEY_PREFIX = "tn_pk_"
SECRET = "secret"
PUBLISHABLE = "publishable"
_ORIGIN_RE = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")
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


def create_key(
    db: Session, owner: Owner, *, name: str = "", max_open_sessions: int | None = None
) -> tuple[ApiKey, str]:
    """Create a secret key for ``owner`` (no cap on its open sessions unless
    ``max_open_sessions`` sets one). Returns the row and the plaintext (shown once)."""
    _check_max_open_sessions(max_open_sessions)
    return _mint(db, owner, SECRET, name=name, max_open_sessions=max_open_sessions)


def _mint(db: Session, owner: Owner, kind: str, **fields: object) -> tuple[ApiKey, str]:
    """Store a new key of ``kind`` for ``owner`` with ``fields``: a random key of its kind's
    prefix, kept as its hash and its first characters (which the listings show)."""
    key_prefix = PUBLISHABLE_KEY_PREFIX if kind == PUBLISHABLE else SECRET_KEY_PREFIX
    plaintext = key_prefix + secrets.token_urlsafe(32)
    row = ApiKey(
        owner_id=owner.id,
        kind=kind,
        prefix=plaintext[: len(key_prefix) + 6],
        key_hash=hash_key(plaintext),
        **fields,
    )
    db.add(row)
    db.flush()
    return row, plaintext


def _check_max_open_sessions(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValidationError("max_open_sessions must be at least 1", field="max_open_sessions")


def normalize_origin(value: str) -> str:
    """``https://Example.com/`` → ``https://example.com``; a path, query or other scheme is
    refused: an origin is what a browser sends in ``Origin``, scheme, host and port only."""
    origin = value.strip().rstrip("/").lower()
    match = _ORIGIN_RE.match(origin)
    if match is None:
        raise ValidationError(
            f"{value!r} is not an origin: use scheme://host[:port], such as https://example.com",
            field="origins",
        )
    default = {"http": ":80", "https": ":443"}[match.group(1)]
    return origin.removesuffix(default) if match.group(3) == default else origin


def create_publishable_key(
    db: Session,
    owner: Owner,
    *,
    agents_allowed: list[str],
    origins: list[str],
    name: str = "",
    rate_limit_per_minute: int | None = None,
    max_open_sessions: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a publishable key for ``owner``: it may start sessions only with
    ``agents_allowed`` (ids or names of the owner's agents, stored as ids), only from
    ``origins``; ``rate_limit_per_minute`` and ``max_open_sessions`` are its own limits
    (``None``: the server's defaults). Returns the row and the plaintext (shown once)."""
    if not agents_allowed:
        raise ValidationError("a publishable key needs at least one agent", field="agents")
    if not origins:
        raise ValidationError("a publishable key needs at least one origin", field="origins")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValidationError("rate_limit_per_minute must be at least 1", field="rate_limit")
    _check_max_open_sessions(max_open_sessions)
    agent_ids = list(dict.fromkeys(agents.get_agent(db, owner.id, a).id for a in agents_allowed))
    allowed = list(dict.fromkeys(normalize_origin(o) for o in origins))
    return _mint(
        db,
        owner,
        PUBLISHABLE,
        name=name,
        allowed_agents=agent_ids,
        allowed_origins=allowed,
        rate_limit_per_minute=rate_limit_per_minute,
        max_open_sessions=max_open_sessions,
    )


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


def max_open_sessions(key: ApiKey, publishable_default: int) -> int | None:
    """How many of its sessions ``key`` may have open at once: its own cap, else
    ``publishable_default`` for a publishable key; ``None`` (no cap) for a secret key."""
    if key.max_open_sessions is not None:
        return key.max_open_sessions
    return publishable_default if key.kind == PUBLISHABLE else None


def lock(db: Session, key_id: str) -> None:
    """Lock the key's row until ``db`` commits, so that what is counted for the key and then
    written in this transaction cannot interleave with another transaction doing the same.

    PostgreSQL locks the row (``SELECT … FOR UPDATE``); SQLite has no row locks, and a write
    takes its one database-wide write lock, so the row is updated to itself: SQLite's
    transaction begins here (at the first write) and every read after it is serialised."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())
    else:
        db.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(kind=ApiKey.kind)
            .execution_options(synchronize_session=False)
        )


#: ``last_used_at`` is this precise: a key used more often is not written on every request
#: (a write per request would serialise all of them on SQLite's one writer).
TOUCH_RESOLUTION = timedelta(seconds=60)


def touch(db: Session, key: ApiKey) -> None:
    now = utcnow()
    last = key.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite hands datetimes back naive (UTC)
        last = last.replace(tzinfo=UTC)
    if last is None or now - last >= TOUCH_RESOLUTION:
        key.last_used_at = now


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
