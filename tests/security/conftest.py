"""Fixtures of the security tests: owners made directly in the store, with their API keys."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from thinnest.livekit.devserver import LiveKitDevServer
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


#: No worker registers for this agent name: sessions these tests start are dispatched nowhere,
#: so they never occupy the engine tests' worker (it may be alive in the same pytest session).
NO_WORKER_AGENT = "thinnest-security-no-worker"


@pytest.fixture(scope="module")
def security_api(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """The real API (real store, real LiveKit) whose sessions no worker takes."""
    running = start_api(
        make_settings(
            tmp_path_factory.mktemp("security-api"),
            livekit_server,
            agent_name=NO_WORKER_AGENT,
            rate_limit_per_minute=100_000,
        ),
        database,
    )
    yield running
    running.stop()
