"""API keys of the caller's owner: list, create (shown once; secret or publishable), revoke."""

from __future__ import annotations

from fastapi import APIRouter

from thinnest.api.deps import CurrentKey, DbSession
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import KeyCreate, KeyCreated, KeyOut
from thinnest.errors import ValidationError
from thinnest.store import keys

router = APIRouter(prefix="/keys", tags=["keys"], responses=ERROR_RESPONSES)


@router.get("")
def list_keys(key: CurrentKey, db: DbSession) -> list[KeyOut]:
    """List the owner's API keys (never the keys themselves)."""
    return [
        KeyOut.model_validate(k, from_attributes=True) for k in keys.list_keys(db, key.owner_id)
    ]


@router.post("", status_code=201)
def create_key(body: KeyCreate, key: CurrentKey, db: DbSession) -> KeyCreated:
    """Create a secret or publishable key for the same owner; the key is in this response only."""
    if body.kind == keys.PUBLISHABLE:
        row, plaintext = keys.create_publishable_key(
            db,
            key.owner,
            name=body.name,
            agents_allowed=body.agents,
            origins=body.origins,
            rate_limit_per_minute=body.rate_limit_per_minute,
            max_open_sessions=body.max_open_sessions,
        )
    else:
        if body.agents or body.origins or body.rate_limit_per_minute is not None:
            raise ValidationError(
                "agents, origins and rate_limit_per_minute belong to publishable keys: "
                'add "kind": "publishable"',
                field="kind",
            )
        row, plaintext = keys.create_key(
            db, key.owner, name=body.name, max_open_sessions=body.max_open_sessions
        )
    db.commit()
    shown = KeyOut.model_validate(row, from_attributes=True)
    return KeyCreated(key=plaintext, **shown.model_dump())


@router.delete("/{key_id}")
def revoke_key(key_id: str, key: CurrentKey, db: DbSession) -> KeyOut:
    """Revoke one of the owner's API keys (idempotent)."""
    row = keys.revoke_key(db, key_id, key.owner_id)
    db.commit()
    return KeyOut.model_validate(row, from_attributes=True)
