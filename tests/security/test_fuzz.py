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
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.security.conftest import NO_WORKER_AGENT
from thinnest.api.main import create_app
from thinnest.api.schemas import ErrorResponse
from thinnest.config import DEV_CREDENTIALS_FILE, Settings
from thinnest.contracts import jsonvalue
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

#: Examples per operation and key variant; 13 operations x 2 variants x this = the CI budget.
MAX_EXAMPLES = 25
#: Bodies each odd-JSON test (below) sends.
JSON_EXAMPLES = 60
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
_JSON_SETTINGS = settings(
    max_examples=JSON_EXAMPLES,
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
    if case.operation.label == "POST /webhooks" and response.status_code == 201:
        # A fuzzed URL names a made-up host: gone before any event could be queued for it.
        gone = httpx.delete(
            f"{api.url}/webhooks/{response.json()['id']}", headers=headers, timeout=30
        )
        assert gone.status_code == 204, gone.text
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


# --- JSON values schemathesis does not generate: lone surrogates and deep nesting ------------
#
# Schemathesis generates valid Unicode text and shallow objects, so it never found that a lone
# surrogate ("\\ud800" in JSON) or a context 250 levels deep was stored and then broke every read
# of it (and the voice engine), nor that ``Infinity`` was stored on SQLite and a 500 on
# PostgreSQL. These strategies generate exactly those, anywhere in a value.

_LONE_SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
#: Text that may hold lone surrogates (hypothesis leaves category Cs out unless asked).
_TEXT = st.text(st.characters(exclude_categories=()) | _LONE_SURROGATE, max_size=6)
#: Leaves, NaN and infinities included (Python's JSON parser reads them; they are not JSON).
_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_SHALLOW = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)


def _nest(leaf: Any, levels: int, shapes: list[bool]) -> Any:
    value = leaf
    for i in range(levels):
        value = {"k": value} if shapes[i % len(shapes)] else [value]
    return value


_DEEP = st.builds(
    _nest, _SHALLOW, st.integers(1, 600), st.lists(st.booleans(), min_size=1, max_size=4)
)
#: A JSON object for a free-form field: shallow with odd text, or nested up to 600 levels.
JSON_OBJECTS = st.dictionaries(_TEXT, _SHALLOW | _DEEP, min_size=1, max_size=3)


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()  # a lone surrogate is written as its \\u escape


@pytest.fixture(scope="module")
def publishable_key(fuzz_api: tuple[RunningApi, Tenant]) -> str:
    tenant = fuzz_api[1]
    agent = tenant.http.get("/agents").json()[0]["id"]
    resp = tenant.http.post(
        "/keys",
        json={
            "kind": "publishable",
            "agents": [agent],
            "origins": ["https://site.example"],
            "rate_limit_per_minute": 100000,
            "max_open_sessions": 100000,  # no worker ends them: every example's stays open
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _still_readable(http: httpx.Client, session_id: str | None = None) -> None:
    for path in ["/voice/sessions?limit=100", "/agents"]:
        resp = http.get(path)
        assert resp.status_code == 200, f"{path}: {resp.text[:300]}"
    if session_id is not None:
        assert http.get(f"/voice/sessions/{session_id}").status_code == 200


@given(context=JSON_OBJECTS, publishable=st.booleans())
@_JSON_SETTINGS
def test_odd_json_in_context_never_gives_a_5xx_or_an_unreadable_session(
    fuzz_api: tuple[RunningApi, Tenant], publishable_key: str, context: Any, publishable: bool
) -> None:
    api, tenant = fuzz_api
    agent = tenant.http.get("/agents").json()[0]["id"]
    headers = {"Content-Type": "application/json"}
    if publishable:
        headers |= {"Authorization": f"Bearer {publishable_key}", "Origin": "https://site.example"}
    with api.client(None if publishable else tenant.key) as http:
        resp = http.post(
            "/voice/start", content=_raw({"agent_id": agent, "context": context}), headers=headers
        )
    variant = "publishable" if publishable else "secret"
    SEEN[("POST /voice/start (odd JSON)", variant, resp.status_code)] += 1
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code == 200:
        sent = json.loads(json.dumps(context))  # as the API read it: a surrogate pair is 1 char
        assert jsonvalue.lone_surrogate_at(sent) is None
        assert jsonvalue.non_finite_at(sent) is None
        assert jsonvalue.depth(sent) <= 16
        sid = resp.json()["session_id"]
        stored = tenant.http.get(f"/voice/sessions/{sid}").json()["context"]
        assert stored == sent  # exactly what was sent
    else:
        assert resp.status_code == 422, resp.text[:500]
        assert resp.json()["error"]["field"] == "context"
    _still_readable(tenant.http)


@given(options=JSON_OBJECTS, where=st.sampled_from(["parameters", "options", "patch"]))
@_JSON_SETTINGS
def test_odd_json_in_an_agent_never_gives_a_5xx_or_an_unreadable_agent(
    fuzz_api: tuple[RunningApi, Tenant], options: Any, where: str
) -> None:
    tenant = fuzz_api[1]
    tool = {"name": "t", "description": "d", "url": "https://tools.example/t"}
    if where == "parameters":
        body = {
            "name": f"odd-{secrets.token_hex(4)}",
            "tools": [{**tool, "parameters": {"type": "object", "properties": options}}],
        }
    elif where == "options":
        body = {
            "name": f"odd-{secrets.token_hex(4)}",
            "providers": {"llm": {"name": "llama", "options": options}},
        }
    else:
        body = {"tools": [{**tool, "headers": options}], "instructions": _first_text(options)}
    if where == "patch":
        agent = tenant.http.get("/agents").json()[0]["id"]
        resp = tenant.http.patch(
            f"/agents/{agent}", content=_raw(body), headers={"Content-Type": "application/json"}
        )
    else:
        resp = tenant.http.post(
            "/agents", content=_raw(body), headers={"Content-Type": "application/json"}
        )
    SEEN[(f"agents (odd JSON in {where})", "secret", resp.status_code)] += 1
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code in (200, 201):
        sent = json.loads(json.dumps(body))
        assert jsonvalue.lone_surrogate_at(sent) is None
        assert jsonvalue.non_finite_at(sent) is None
        _still_readable(tenant.http)
        agent_id = resp.json()["id"]
        assert tenant.http.get(f"/agents/{agent_id}").status_code == 200
    else:
        assert resp.status_code == 422, resp.text[:500]
        assert resp.json()["error"]["field"].split(".")[0] in body
    _still_readable(tenant.http)


_ID_ROUTES = [
    ("GET", "/agents/{}"),
    ("PATCH", "/agents/{}"),
    ("DELETE", "/agents/{}"),
    ("GET", "/voice/sessions/{}"),
    ("POST", "/voice/sessions/{}/end"),
    ("GET", "/voice/sessions/{}/recording"),
    ("DELETE", "/keys/{}"),
    ("GET", "/webhooks/{}"),
    ("PATCH", "/webhooks/{}"),
    ("DELETE", "/webhooks/{}"),
    ("POST", "/webhooks/{}/test"),
    ("GET", "/webhooks/{}/deliveries"),
    ("GET", "/voice/sessions?agent_id={}"),
    ("GET", "/voice/sessions?status=active&{}=1"),
]


@given(text=_TEXT.filter(bool), route=st.sampled_from(_ID_ROUTES))
@_JSON_SETTINGS
def test_odd_text_in_a_path_or_query_never_gives_a_5xx(
    fuzz_api: tuple[RunningApi, Tenant], text: str, route: tuple[str, str]
) -> None:
    """Schemathesis sent no ``%00``: on PostgreSQL every lookup with one was a 500."""
    method, template = route
    quoted = quote(text.encode("utf-8", "surrogatepass"), safe="")
    tenant = fuzz_api[1]
    body = {"greeting": "hi"} if method == "PATCH" else None
    resp = tenant.http.request(method, template.format(quoted), json=body)
    SEEN[(f"{method} {template} (odd text)", "secret", resp.status_code)] += 1
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code >= 400:
        ErrorResponse.model_validate_json(resp.content)
    _still_readable(tenant.http)


def _first_text(value: Any) -> str:
    """Some text out of a generated value (it may hold a lone surrogate), else a default."""
    for key, item in value.items():
        if isinstance(item, str) and item:
            return item
        if key:
            return str(key)
    return "Be brief."


def test_no_fuzzed_request_was_answered_with_a_server_error() -> None:
    """Runs after the fuzzing above: a 5xx that hypothesis could not replay still counts."""
    assert SEEN, "the fuzz tests above ran first"
    assert {k: n for k, n in SEEN.items() if k[2] >= 500} == {}
