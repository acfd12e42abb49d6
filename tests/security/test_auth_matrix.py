"""Every authenticated endpoint x every kind of caller, against the real API: no key, a
malformed key, an unknown key, a revoked key, another owner's key, the owner's valid key.

The documented answers: 401 (``missing_api_key`` / ``invalid_api_key`` / ``revoked_api_key``)
for the first four; 404 for another owner's resources (never leaking that they exist), and
lists that hold only the caller's own rows; the documented 2xx for the owner.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApi, Tenant
from tests.security.conftest import new_owner
from thinnest.api.main import create_app
from thinnest.api.schemas import ErrorResponse
from thinnest.config import Settings
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


@dataclass
class World:
    """Alice owns things; Mallory is another owner; a revoked key of Alice's; a publishable
    key of Alice's for one agent and one website."""

    alice: Tenant
    mallory: Tenant
    revoked_key: str
    publishable_key: str = ""
    published_agent: str = ""

    def agent(self) -> str:
        return str(self.alice.create_agent()["id"])

    def session(self) -> str:
        resp = self.alice.http.post("/voice/start", json={"agent_id": self.agent()})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["session_id"])

    def spare_key(self) -> str:
        resp = self.alice.http.post("/keys", json={"name": "spare"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def webhook(self) -> str:
        # An owner has at most 20: earlier tests' go (each test uses only its own).
        for old in self.alice.http.get("/webhooks").json()[:-10]:
            assert self.alice.http.delete(f"/webhooks/{old['id']}").status_code == 204
        resp = self.alice.http.post("/webhooks", json={"url": "http://127.0.0.1:9/in"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def delivery(self) -> str:
        """``<webhook id>/deliveries/<delivery id>``: a test event of a fresh webhook."""
        webhook_id = self.webhook()
        resp = self.alice.http.post(f"/webhooks/{webhook_id}/test")
        assert resp.status_code == 202, resp.text
        return f"{webhook_id}/deliveries/{resp.json()['id']}"


@pytest.fixture(scope="module")
def world(security_api: RunningApi, database: Database) -> Iterator[World]:
    api = security_api
    alice, mallory = new_owner(api, database), new_owner(api, database)
    with api.client(alice.key) as http:
        doomed = http.post("/keys", json={"name": "doomed"}).json()
        assert http.delete(f"/keys/{doomed['id']}").status_code == 200
    world = World(alice, mallory, doomed["key"])
    world.session()  # so that every list has rows of Alice's
    world.published_agent = world.agent()
    published = alice.http.post(
        "/keys",
        json={
            "name": "widget",
            "kind": "publishable",
            "agents": [world.published_agent],
            "origins": [SHOP],
            "rate_limit_per_minute": 1000,
        },
    )
    assert published.status_code == 201, published.text
    world.publishable_key = published.json()["key"]
    yield world
    alice.http.close()
    mallory.http.close()


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {agent}, {session} or {key}: filled with a fresh resource of Alice's
    body: Callable[[World], dict[str, Any]] | None
    ok: int
    #: For lists: the JSON of the answer, and the ids of Alice's rows that must not be in it.
    listed: Callable[[Any], set[str]] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _ids(rows: list[dict[str, Any]]) -> set[str]:
    return {str(r["id"]) for r in rows}


ENDPOINTS = [
    Endpoint("POST", "/voice/start", lambda w: {"agent_id": w.agent()}, 200),
    Endpoint("GET", "/voice/sessions", None, 200, listed=lambda j: _ids(j["data"])),
    Endpoint("GET", "/voice/sessions/{session}", None, 200),
    Endpoint("POST", "/voice/sessions/{session}/end", None, 200),
    # The owner gets 404 too, with its own code: the session has no recording.
    Endpoint("GET", "/voice/sessions/{session}/recording", None, 404),
    Endpoint("GET", "/agents", None, 200, listed=_ids),
    Endpoint("POST", "/agents", lambda w: {"name": f"a-{secrets.token_hex(4)}"}, 201),
    Endpoint("GET", "/agents/{agent}", None, 200),
    Endpoint("PATCH", "/agents/{agent}", lambda w: {"greeting": "Hi."}, 200),
    Endpoint("DELETE", "/agents/{agent}", None, 204),
    Endpoint("GET", "/keys", None, 200, listed=_ids),
    Endpoint("POST", "/keys", lambda w: {"name": "k"}, 201),
    Endpoint("DELETE", "/keys/{key}", None, 200),
    Endpoint("GET", "/webhooks", None, 200, listed=_ids),
    Endpoint("POST", "/webhooks", lambda w: {"url": "http://127.0.0.1:9/new"}, 201),
    Endpoint("GET", "/webhooks/{webhook}", None, 200),
    Endpoint("PATCH", "/webhooks/{webhook}", lambda w: {"description": "Hi."}, 200),
    Endpoint("DELETE", "/webhooks/{webhook}", None, 204),
    Endpoint("POST", "/webhooks/{webhook}/test", None, 202),
    Endpoint("GET", "/webhooks/{webhook}/deliveries", None, 200),
    Endpoint("GET", "/webhooks/{delivery}", None, 200),
    Endpoint("POST", "/webhooks/{delivery}/resend", None, 202),
    Endpoint("POST", "/webhooks/{webhook}/rotate-secret", None, 200),
    Endpoint(
        "GET", "/stats/overview", None, 200, listed=lambda j: {a["agent_id"] for a in j["agents"]}
    ),
]

#: The website Alice's publishable key is for.
SHOP = "https://shop.example"

#: Operations that take no API key at all (health probes, the dev demo with its own key, the
#: console's sign-in: its cookie and CSRF token are tested in tests/api/test_console_auth.py).
PUBLIC = {
    "GET /healthz",
    "GET /readyz",
    "GET /console/session",
    "POST /console/session",
    "DELETE /console/session",
}
PUBLIC_PREFIXES = ("/demo",)

UNAUTHORISED = {
    "no-key": (None, "missing_api_key"),
    "not-bearer": ("Basic dXNlcjpwYXNz", "missing_api_key"),
    "malformed-key": ("Bearer not-a-key", "invalid_api_key"),
    "unknown-key": (f"Bearer tn_sk_{'A' * 43}", "invalid_api_key"),
    "revoked-key": ("revoked", "revoked_api_key"),
}


def _request(
    api: RunningApi, world: World, endpoint: Endpoint, auth: str | None, origin: str | None = None
) -> tuple[httpx.Response, set[str]]:
    """Fill the path with fresh resources of Alice's, call it with ``auth`` (from a page of
    ``origin`` where one is given); also return the ids of the resources used (for the list
    checks)."""
    used: set[str] = set()
    path = endpoint.path
    for name, make in (
        ("{agent}", world.agent),
        ("{session}", world.session),
        ("{key}", world.spare_key),
        ("{webhook}", world.webhook),
        ("{delivery}", world.delivery),
    ):
        if name in path:
            value = make()
            used.add(value)
            path = path.replace(name, value)
    body = endpoint.body(world) if endpoint.body else None
    headers = {"Authorization": auth} if auth else {}
    if origin:
        headers["Origin"] = origin
    with api.client() as http:
        resp = http.request(endpoint.method, path, json=body, headers=headers)
    return resp, used


def _error_code(resp: httpx.Response) -> str:
    return ErrorResponse.model_validate_json(resp.content).error.code


def test_the_matrix_covers_every_authenticated_operation(tmp_path: object) -> None:
    app = create_app(Settings(data_dir=tmp_path), database=Database("sqlite://"))  # type: ignore[arg-type]
    operations = {
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
    }
    covered = {
        e.id.replace("{agent}", "{agent_id}")
        .replace("{session}", "{session_id}")
        .replace("{key}", "{key_id}")
        .replace("{webhook}", "{webhook_id}")
        .replace("{delivery}", "{webhook_id}/deliveries/{delivery_id}")
        for e in ENDPOINTS
    }
    public = {op for op in operations if op in PUBLIC or op.split()[1].startswith(PUBLIC_PREFIXES)}
    assert operations - public == covered


@pytest.mark.parametrize("variant", list(UNAUTHORISED))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_callers_without_a_live_key_get_401(
    security_api: RunningApi, world: World, endpoint: Endpoint, variant: str
) -> None:
    api = security_api
    auth, code = UNAUTHORISED[variant]
    if auth == "revoked":
        auth = f"Bearer {world.revoked_key}"
    resp, _ = _request(api, world, endpoint, auth)
    assert resp.status_code == 401, resp.text
    assert _error_code(resp) == code
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def _intact(world: World, rid: str) -> None:
    """Alice's resource is as she left it after Mallory's attempt."""
    http = world.alice.http
    if rid.startswith("session_"):
        assert http.get(f"/voice/sessions/{rid}").json()["status"] == "active"
    elif rid.startswith("agent_"):
        assert http.get(f"/agents/{rid}").json()["greeting"] != "Hi."
    elif rid.startswith("webhook_"):  # a webhook, or one of its deliveries
        resp = http.get(f"/webhooks/{rid.split('/')[0]}")
        assert resp.status_code == 200 and resp.json()["description"] != "Hi."
    else:
        (row,) = [k for k in http.get("/keys").json() if k["id"] == rid]
        assert row["revoked_at"] is None


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_another_owners_key_sees_nothing_of_alices(
    security_api: RunningApi, world: World, endpoint: Endpoint
) -> None:
    api = security_api
    # Alice's resources exist (fresh ones fill the path); Mallory calls with his valid key.
    resp, used = _request(api, world, endpoint, f"Bearer {world.mallory.key}")
    if endpoint.listed is not None:
        assert resp.status_code == 200, resp.text
        alices = endpoint.listed(world.alice.http.get(endpoint.path).json())
        assert alices, "Alice owns rows of this list"
        assert not endpoint.listed(resp.json()) & alices
    elif used:
        assert resp.status_code == 404, resp.text
        assert _error_code(resp) in (
            "agent_not_found",
            "session_not_found",
            "key_not_found",
            "webhook_not_found",
        )
        for rid in used:
            _intact(world, rid)
    elif endpoint.path == "/voice/start":
        assert resp.status_code == 404, resp.text  # Alice's agent is not Mallory's to call
        assert _error_code(resp) == "agent_not_found"
    else:  # creating: Mallory makes his own row, which Alice does not see
        assert resp.status_code == endpoint.ok, resp.text
        collection = world.alice.http.get(endpoint.path).json()
        assert resp.json()["id"] not in _ids(collection)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_the_owners_valid_key_gets_the_documented_answer(
    security_api: RunningApi, world: World, endpoint: Endpoint
) -> None:
    api = security_api
    resp, _ = _request(api, world, endpoint, f"Bearer {world.alice.key}")
    assert resp.status_code == endpoint.ok, resp.text
    if resp.status_code == 404:
        assert _error_code(resp) == "recording_not_found"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_a_publishable_key_is_refused_everywhere_but_its_own_start(
    security_api: RunningApi, world: World, endpoint: Endpoint
) -> None:
    api = security_api
    # From its own website, but for another of Alice's agents or on another endpoint: 403.
    resp, used = _request(api, world, endpoint, f"Bearer {world.publishable_key}", origin=SHOP)
    assert resp.status_code == 403, resp.text
    expected = (
        "agent_not_allowed" if endpoint.path == "/voice/start" else ("publishable_key_not_allowed")
    )
    assert _error_code(resp) == expected
    for rid in used:
        _intact(world, rid)


@pytest.mark.parametrize(
    ("origin", "status", "code"),
    [
        pytest.param(SHOP, 200, None, id="its-own-website"),
        pytest.param("https://evil.example", 403, "origin_not_allowed", id="another-website"),
        pytest.param(None, 403, "origin_not_allowed", id="no-origin"),
    ],
)
def test_a_publishable_key_starts_its_agent_only_from_its_website(
    security_api: RunningApi, world: World, origin: str | None, status: int, code: str | None
) -> None:
    api = security_api
    headers = {"Authorization": f"Bearer {world.publishable_key}"}
    if origin:
        headers["Origin"] = origin
    with api.client() as http:
        resp = http.post("/voice/start", json={"agent_id": world.published_agent}, headers=headers)
    assert resp.status_code == status, resp.text
    if code:
        assert _error_code(resp) == code
    else:
        assert resp.json()["session_id"].startswith("session_")
