"""Publishable keys: only POST /voice/start, only for their agents, only from their origins,
with their own rate limit; CORS for /voice/start; readable by nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests._cli import create_publishable_key, run_thinnest
from tests.conftest import RunningApi, Tenant
from thinnest.store import keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

SITE = "https://shop.example"
OTHER = "https://evil.example"


def _publishable(tenant: Tenant, agents: list[str], **fields: object) -> dict[str, object]:
    body = {"kind": "publishable", "agents": agents, "origins": [SITE], **fields}
    resp = tenant.http.post("/keys", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _start(
    api: RunningApi, key: str, agent: str, origin: str | None = SITE, **extra: str
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **extra}
    if origin is not None:
        headers["Origin"] = origin
    with httpx.Client(base_url=api.url, timeout=30) as http:
        return http.post("/voice/start", json={"agent_id": agent}, headers=headers)


def test_created_over_rest_with_agents_and_origins(tenant: Tenant, database: Database) -> None:
    agent = tenant.create_agent()
    created = _publishable(
        tenant, [str(agent["name"])], origins=["https://Shop.example:443/", "http://127.0.0.1:8080"]
    )
    assert re.fullmatch(r"tn_pk_[A-Za-z0-9_-]{43}", str(created["key"]))
    assert created["kind"] == "publishable"
    assert created["allowed_agents"] == [agent["id"]]  # names are stored as ids
    assert created["allowed_origins"] == [SITE, "http://127.0.0.1:8080"]
    listed = {k["id"]: k for k in tenant.http.get("/keys").json()}
    assert listed[created["id"]]["kind"] == "publishable"
    with database.session() as db:
        row = keys.authenticate(db, str(created["key"]))
        assert row.kind == keys.PUBLISHABLE  # the store's name for the kind


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param({"origins": [SITE]}, 422, "agents", id="no-agents"),
        pytest.param({"agents": ["AGENT"]}, 422, "origins", id="no-origins"),
        pytest.param(
            {"agents": ["AGENT"], "origins": ["shop.example"]},
            422,
            "origins",
            id="origin-without-scheme",
        ),
        pytest.param(
            {"agents": ["AGENT"], "origins": ["https://shop.example/path"]},
            422,
            "origins",
            id="origin-with-path",
        ),
        pytest.param({"agents": ["nope"], "origins": [SITE]}, 404, "agent_id", id="unknown-agent"),
        pytest.param(
            {"agents": ["AGENT"], "origins": [SITE], "rate_limit_per_minute": 0},
            422,
            "rate_limit_per_minute",
            id="zero-rate",
        ),
    ],
)
def test_creation_refuses_bad_input(
    tenant: Tenant, body: dict[str, object], status: int, field: str
) -> None:
    agent = tenant.create_agent()
    if body.get("agents") == ["AGENT"]:
        body = {**body, "agents": [agent["id"]]}
    resp = tenant.http.post("/keys", json={"kind": "publishable", **body})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["field"] == field


def test_secret_keys_take_no_publishable_fields(tenant: Tenant) -> None:
    resp = tenant.http.post("/keys", json={"origins": [SITE]})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "kind"


def test_starts_a_session_from_an_allowed_origin_readable_by_that_page(
    tenant: Tenant, api: RunningApi
) -> None:
    agent = tenant.create_agent()
    key = str(_publishable(tenant, [str(agent["id"])])["key"])
    resp = _start(api, key, str(agent["id"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["session_id"].startswith("session_")
    assert resp.headers["access-control-allow-origin"] == SITE
    # By name too: the name resolves to an allowed id.
    assert _start(api, key, str(agent["name"])).status_code == 200


def _start_with(api: RunningApi, key: str, body: dict[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Origin": SITE}
    with httpx.Client(base_url=api.url, timeout=30) as http:
        return http.post("/voice/start", json=body, headers=headers)


@pytest.mark.parametrize(
    ("extra", "field", "code"),
    [
        pytest.param(
            {"max_duration": 121}, "max_duration", "max_duration_not_allowed", id="longer"
        ),
        pytest.param({"max_duration": 3600}, "max_duration", "max_duration_not_allowed", id="max"),
        pytest.param({"recording": True}, "recording", "recording_not_allowed", id="record"),
    ],
)
def test_a_visitor_cannot_lengthen_a_call_or_turn_recording_on(
    tenant: Tenant,
    api: RunningApi,
    extra: dict[str, object],
    field: str,
    code: str,
) -> None:
    agent = tenant.create_agent(max_duration=120, recording=False)
    key = str(_publishable(tenant, [str(agent["id"])])["key"])
    before = tenant.http.get("/voice/sessions").json()["total"]
    resp = _start_with(api, key, {"agent_id": agent["id"], **extra})
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert (error["field"], error["code"]) == (field, code)
    assert resp.headers["access-control-allow-origin"] == SITE  # the widget can show why
    assert tenant.http.get("/voice/sessions").json()["total"] == before  # nothing started


def test_a_visitor_may_shorten_a_call_and_turn_recording_off(
    tenant: Tenant, api: RunningApi
) -> None:
    agent = tenant.create_agent(max_duration=120, recording=True)
    key = str(_publishable(tenant, [str(agent["id"])], max_open_sessions=3)["key"])
    for extra, expected in [
        ({"max_duration": 60, "recording": False}, (60, False)),
        ({"max_duration": 120, "recording": True}, (120, True)),
        ({}, (120, True)),
    ]:
        resp = _start_with(api, key, {"agent_id": agent["id"], **extra})
        assert resp.status_code == 200, resp.text
        detail = tenant.http.get(f"/voice/sessions/{resp.json()['session_id']}").json()
        assert (detail["max_duration"], detail["recording"]) == expected


def test_a_secret_key_may_still_set_both(tenant: Tenant) -> None:
    agent = tenant.create_agent(max_duration=120, recording=False)
    resp = tenant.http.post(
        "/voice/start", json={"agent_id": agent["id"], "max_duration": 600, "recording": True}
    )
    assert resp.status_code == 200, resp.text
    detail = tenant.http.get(f"/voice/sessions/{resp.json()['session_id']}").json()
    assert (detail["max_duration"], detail["recording"]) == (600, True)


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(OTHER, id="other-origin"),
        pytest.param(None, id="no-origin"),
        pytest.param("null", id="opaque-origin"),
        pytest.param("https://shop.example.evil.example", id="suffix-trick"),
        pytest.param("http://shop.example", id="other-scheme"),
    ],
)
def test_refuses_other_origins_with_a_readable_message(
    tenant: Tenant, api: RunningApi, origin: str | None
) -> None:
    agent = tenant.create_agent()
    key = str(_publishable(tenant, [str(agent["id"])])["key"])
    resp = _start(api, key, str(agent["id"]), origin=origin)
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["code"] == "origin_not_allowed" and error["field"] == "origin"
    assert SITE in error["message"] and "token" not in resp.json()
    if origin is not None:  # the widget on that page can show why
        assert resp.headers["access-control-allow-origin"] == origin


def test_refuses_agents_it_does_not_name_like_unknown_ones(
    tenant: Tenant, api: RunningApi, make_tenant
) -> None:
    allowed, other = tenant.create_agent(), tenant.create_agent()
    foreign = make_tenant().create_agent()
    key = str(_publishable(tenant, [str(allowed["id"])])["key"])
    answers = []
    for agent in (other["id"], foreign["id"], "agent_does_not_exist"):
        resp = _start(api, key, str(agent))
        assert resp.status_code == 403, resp.text
        answers.append(resp.json()["error"]["code"])
    assert answers == ["agent_not_allowed"] * 3


ENDPOINTS = [
    ("GET", "/agents"),
    ("POST", "/agents"),
    ("GET", "/agents/AGENT"),
    ("PATCH", "/agents/AGENT"),
    ("DELETE", "/agents/AGENT"),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("DELETE", "/keys/key_x"),
    ("GET", "/voice/sessions"),
    ("GET", "/voice/sessions/SESSION"),
    ("GET", "/voice/sessions/SESSION/recording"),
    ("POST", "/voice/sessions/SESSION/end"),
]


@pytest.mark.parametrize(
    ("method", "path"), [pytest.param(m, p, id=f"{m} {p}") for m, p in ENDPOINTS]
)
def test_can_read_or_change_nothing_else(
    tenant: Tenant, api: RunningApi, method: str, path: str
) -> None:
    agent = tenant.create_agent()
    key = str(_publishable(tenant, [str(agent["id"])])["key"])
    started = _start(api, key, str(agent["id"]))
    assert started.status_code == 200
    path = path.replace("AGENT", str(agent["id"])).replace("SESSION", started.json()["session_id"])
    body = {"name": "x"} if method in ("POST", "PATCH") else None
    with api.client(key) as http:
        resp = http.request(method, path, json=body, headers={"Origin": SITE})
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "publishable_key_not_allowed"
    assert "access-control-allow-origin" not in resp.headers
    # Nothing changed: the agent is still there, the session still active.
    assert tenant.http.get(f"/agents/{agent['id']}").status_code == 200


def test_its_own_rate_limit(tenant: Tenant, api: RunningApi) -> None:
    agent = tenant.create_agent()
    key = str(_publishable(tenant, [str(agent["id"])], rate_limit_per_minute=2)["key"])
    codes = [_start(api, key, str(agent["id"])).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = _start(api, key, str(agent["id"]))
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["access-control-allow-origin"] == SITE
    # The owner's secret key has its own budget.
    assert tenant.http.post("/voice/start", json={"agent_id": agent["id"]}).status_code == 200


def test_revoked_publishable_key_is_refused(tenant: Tenant, api: RunningApi) -> None:
    agent = tenant.create_agent()
    created = _publishable(tenant, [str(agent["id"])])
    assert tenant.http.delete(f"/keys/{created['id']}").status_code == 200
    resp = _start(api, str(created["key"]), str(agent["id"]))
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "revoked_api_key"


def test_cors_preflight_only_for_voice_start(api: RunningApi) -> None:
    preflight = {
        "Origin": OTHER,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    with api.client() as http:
        resp = http.options("/voice/start", headers=preflight)
        assert resp.status_code == 204
        assert resp.headers["access-control-allow-origin"] == OTHER
        assert "authorization" in resp.headers["access-control-allow-headers"]
        other = http.options("/agents", headers=preflight)
    assert "access-control-allow-origin" not in other.headers


def test_a_page_can_never_read_a_secret_key_response(tenant: Tenant, api: RunningApi) -> None:
    agent = tenant.create_agent()
    resp = _start(api, tenant.key, str(agent["id"]), origin=SITE)
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers


def test_cli_creates_a_publishable_key(tmp_path: Path) -> None:
    created = create_publishable_key(tmp_path, "https://shop.example", "--rate-limit", "5")
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"tn_pk_[A-Za-z0-9_-]{43}", created.stdout.strip().splitlines()[-1])
    assert "https://shop.example" in created.stderr
    assert "publishable" in run_thinnest(tmp_path, "keys", "list", "--owner", "acme").stdout
    refused = run_thinnest(
        tmp_path, "keys", "create", "--owner", "acme", "--origin", "https://shop.example"
    )
    assert refused.returncode == 1 and "--publishable" in refused.stderr
    no_origin = run_thinnest(
        tmp_path, "keys", "create", "--owner", "acme", "--publishable", "--agent", "helper"
    )
    assert no_origin.returncode == 1 and "origin" in no_origin.stderr
