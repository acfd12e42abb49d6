"""API keys over REST, health endpoints, the OpenAPI docs and the error shape of odd routes."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import RunningApi, Tenant
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def test_keys_are_shown_once_stored_hashed_and_revocable(
    tenant: Tenant, database: Database, api: RunningApi
) -> None:
    created = tenant.http.post("/keys", json={"name": "ci"})
    assert created.status_code == 201
    new_key = created.json()["key"]
    assert new_key.startswith("tn_sk_")
    listed = tenant.http.get("/keys").json()
    assert len(listed) == 2
    assert all("key" not in k for k in listed)
    with database.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT key_hash FROM api_keys"))]
    assert new_key not in stored and tenant.key not in stored

    with api.client(new_key) as http:
        assert http.get("/agents").status_code == 200
        assert tenant.http.delete(f"/keys/{created.json()['id']}").status_code == 200
        assert http.get("/agents").status_code == 401
    assert tenant.http.get("/agents").status_code == 200  # the other key still works


def test_health_and_readiness(api: RunningApi) -> None:
    with api.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "livekit": "ok"}


def test_docs_and_openapi_are_served(api: RunningApi) -> None:
    with api.client() as http:
        assert http.get("/docs").status_code == 200
        schema = http.get("/openapi.json").json()
    assert "/voice/start" in schema["paths"]
    responses = schema["paths"]["/voice/start"]["post"]["responses"]
    assert {"200", "401", "404", "422", "429", "503"} <= set(responses)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nope", 404, "not_found", id="unknown-route"),
        pytest.param("GET", "/voice/start", 405, "method_not_allowed", id="wrong-method"),
    ],
)
def test_unknown_routes_answer_in_the_error_shape(
    api: RunningApi, method: str, path: str, status: int, code: str
) -> None:
    with api.client() as http:
        resp = http.request(method, path)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
