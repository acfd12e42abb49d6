"""Schemathesis fuzzes every operation of the API's own OpenAPI schema against the real API
(real store, real LiveKit), with no key and with a valid key: no 5xx, every response as the
schema says, every error in the documented ``{"error": {"code", "message", "field"}}`` shape.

The schema is built from the app at import (schemathesis needs it to collect one test per
operation); a test checks it is exactly what the running API serves.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.security.conftest import NO_WORKER_AGENT
from thinnest.api.main import create_app
from thinnest.api.schemas import ErrorResponse
from thinnest.config import DEV_CREDENTIALS_FILE, Settings
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

#: Examples per operation and key variant; 13 operations x 2 variants x this = the CI budget.
MAX_EXAMPLES = 25
#: Every request made, by (operation, variant, status); summed up when the module ends.
SEEN: Counter[tuple[str, str, int]] = Counter()


def _own_schema() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)), database=Database("sqlite://"))
        return app.openapi()


OPENAPI = _own_schema()
schema = schemathesis.openapi.from_dict(OPENAPI)

_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_api(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningApi, Tenant]]:
    """The real API (real store, real LiveKit) with a tenant that owns an agent and a session,
    so lookups are not all 404; its data dir holds a dev key so the demo routes answer too."""
    name = f"owner-{secrets.token_hex(4)}"
    with database.session() as db:
        owner = keys.get_or_create_owner(db, name)
        _row, plaintext = keys.create_key(db, owner)
        owner_id = owner.id
    data_dir = tmp_path_factory.mktemp("fuzz")
    (data_dir / DEV_CREDENTIALS_FILE).write_text(json.dumps({"api_key": plaintext}))
    running = start_api(
        make_settings(
            data_dir,
            livekit_server,
            agent_name=NO_WORKER_AGENT,  # the sessions it starts occupy no worker
            rate_limit_per_minute=100_000,
        ),
        database,
    )
    try:
        with running.client(plaintext) as http:
            tenant = Tenant(owner_id, name, plaintext, http)
            agent = tenant.create_agent(name="fuzz-agent")
            assert http.post("/voice/start", json={"agent_id": agent["id"]}).status_code == 200
            yield running, tenant
    finally:
        running.stop()
    by_status: Counter[int] = Counter()
    for (_op, _v, status), n in SEEN.items():
        by_status[status] += n
    print(f"\nfuzz: {sum(SEEN.values())} requests; by status {dict(sorted(by_status.items()))}")


def test_the_fuzzed_schema_is_the_served_one(fuzz_api: tuple[RunningApi, Tenant]) -> None:
    with fuzz_api[0].client() as http:
        assert http.get("/openapi.json").json() == OPENAPI


def _call_and_check(
    case: schemathesis.Case, api: RunningApi, variant: str, key: str | None
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = case.call(base_url=api.url, headers=headers, timeout=30)
    SEEN[(case.operation.label, variant, response.status_code)] += 1
    assert response.status_code < 500, f"{case.operation.label}: {response.text[:500]}"
    if response.status_code >= 400:  # the documented error shape, whatever the route
        ErrorResponse.model_validate_json(response.content)
    # Schema-valid data may still be refused for rules the schema cannot state (a name in use,
    # max_duration above the server's configured maximum, an unknown provider): not checked.
    case.validate_response(response, headers=headers, excluded_checks=[positive_data_acceptance])


@schema.parametrize()
@_SETTINGS
def test_fuzzed_requests_without_a_key(
    case: schemathesis.Case, fuzz_api: tuple[RunningApi, Tenant]
) -> None:
    _call_and_check(case, fuzz_api[0], "no-key", None)


@schema.parametrize()
@_SETTINGS
def test_fuzzed_requests_with_a_valid_key(
    case: schemathesis.Case, fuzz_api: tuple[RunningApi, Tenant]
) -> None:
    _call_and_check(case, fuzz_api[0], "valid-key", fuzz_api[1].key)


def test_no_fuzzed_request_was_answered_with_a_server_error() -> None:
    """Runs after the fuzzing above: a 5xx that hypothesis could not replay still counts."""
    assert SEEN, "the fuzz tests above ran first"
    assert {k: n for k, n in SEEN.items() if k[2] >= 500} == {}
