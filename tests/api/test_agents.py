"""Agents REST: owner-scoped CRUD with a validated config."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import RunningApi, Tenant

pytestmark = pytest.mark.integration

TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "url": "http://127.0.0.1:9/weather",
    "method": "GET",
    "timeout": 5,
}


def test_create_read_update_delete(tenant: Tenant) -> None:
    created = tenant.create_agent(
        name="support",
        instructions="Be brief.",
        tools=[TOOL],
        providers={"llm": {"name": "llama", "options": {}}},
    )
    assert created["id"].startswith("agent_")
    assert created["providers"]["stt"]["name"] == "whisper"  # defaults filled in
    assert created["tools"][0]["name"] == "get_weather"
    assert tenant.http.get(f"/agents/{created['id']}").json()["instructions"] == "Be brief."
    assert tenant.http.get("/agents/support").json()["id"] == created["id"]  # by name

    patched = tenant.http.patch(
        f"/agents/{created['id']}", json={"greeting": "Yo", "max_duration": 90}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["greeting"] == "Yo"
    assert patched.json()["instructions"] == "Be brief."  # untouched fields kept
    assert [a["id"] for a in tenant.http.get("/agents").json()] == [created["id"]]

    assert tenant.http.delete(f"/agents/{created['id']}").status_code == 204
    assert tenant.http.get(f"/agents/{created['id']}").status_code == 404


def test_duplicate_name_conflicts(tenant: Tenant) -> None:
    tenant.create_agent(name="dup")
    resp = tenant.http.post("/agents", json={"name": "dup"})
    assert resp.status_code == 409
    assert resp.json()["error"] == {
        "code": "agent_exists",
        "message": "an agent named 'dup' exists already",
        "field": "name",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "name", id="no-name"),
        pytest.param({"name": ""}, "name", id="empty-name"),
        pytest.param({"name": "a", "max_duration": 0}, "max_duration", id="zero-duration"),
        pytest.param({"name": "a", "max_duration": 100000}, "max_duration", id="over-server-max"),
        pytest.param({"name": "a", "language": "english!"}, "language", id="bad-language"),
        pytest.param(
            {"name": "a", "providers": {"stt": {"name": "Bad Name"}}},
            "providers.stt.name",
            id="bad-provider-name",
        ),
        pytest.param(
            {"name": "a", "tools": [{**TOOL, "name": "end_call"}]},
            "tools.0.name",
            id="reserved-tool",
        ),
        pytest.param(
            {"name": "a", "tools": [{**TOOL, "parameters": {"type": "string"}}]},
            "tools.0.parameters",
            id="tool-schema-not-object",
        ),
        pytest.param(
            {"name": "a", "tools": [{**TOOL, "url": "ftp://x"}]}, "tools.0.url", id="tool-url"
        ),
        pytest.param({"name": "a", "tools": [TOOL, TOOL]}, "tools", id="duplicate-tools"),
        pytest.param({"name": "a", "colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_invalid_configs_get_422_naming_the_field(
    tenant: Tenant, body: dict[str, object], field: str
) -> None:
    resp = tenant.http.post("/agents", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field


def test_patch_is_validated_as_a_whole(tenant: Tenant) -> None:
    agent = tenant.create_agent()
    resp = tenant.http.patch(f"/agents/{agent['id']}", json={"max_duration": -1})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "max_duration"
    resp = tenant.http.patch(f"/agents/{agent['id']}", json={"tools": [{"name": "x"}]})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"].startswith("tools.0.")


def test_owners_cannot_see_or_touch_each_others_agents(
    api: RunningApi, make_tenant: Callable[[], Tenant]
) -> None:
    alice, bob = make_tenant(), make_tenant()
    bobs = bob.create_agent(name="private")
    assert alice.http.get("/agents").json() == []
    for method, path, body in [
        ("GET", f"/agents/{bobs['id']}", None),
        ("GET", "/agents/private", None),
        ("PATCH", f"/agents/{bobs['id']}", {"greeting": "hacked"}),
        ("DELETE", f"/agents/{bobs['id']}", None),
    ]:
        resp = alice.http.request(method, path, json=body)
        assert resp.status_code == 404, (method, path)
        assert resp.json()["error"]["code"] == "agent_not_found"
    assert bob.http.get(f"/agents/{bobs['id']}").json()["greeting"] != "hacked"
    # The same name is free for another owner.
    alice.create_agent(name="private")
