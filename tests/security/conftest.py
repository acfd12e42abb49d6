"""Fixtures of the security tests: owners made directly in the store, with their API keys."""

from __future__ import annotations

import secrets

from tests.conftest import RunningApi, Tenant
from thinnest.store import keys
from thinnest.store.db import Database


def new_owner(api: RunningApi, database: Database) -> Tenant:
    """An owner with one secret key and a client of ``api`` that sends it (caller closes it)."""
    name = f"owner-{secrets.token_hex(4)}"
    with database.session() as db:
        owner = keys.get_or_create_owner(db, name)
        _row, plaintext = keys.create_key(db, owner)
        owner_id = owner.id
    return Tenant(owner_id, name, plaintext, api.client(plaintext))
