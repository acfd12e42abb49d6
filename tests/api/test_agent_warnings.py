"""Saving an agent whose tool URL the SSRF guard would refuse at call time answers with a
``warnings`` list naming the tool; the agent is saved all the same (the guard decides when the
tool is called, with the worker's settings)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import RunningApi, make_settings, start_api
from tests.security.conftest import new_owner
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _tool(url: str, name: str = "lookup") -> dict[str, object]:
    return {"name": name, "description": "Look something up", "url": url}


def _create(api: RunningApi, database: Database, *tools: dict[str, object]) -> dict:
    tenant = new_owner(api, database)
    with tenant.http:
        resp = tenant.http.post(
            "/agents", json={"name": f"agent-{secrets.token_hex(3)}", "tools": list(tools)}
        )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def production_api(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """The real API as production runs it (``THINNEST_ENV=production``: the full guard)."""
    running = start_api(
        make_settings(tmp_path_factory.mktemp("production-api"), livekit_server, env="production"),
        database,
    )
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("url", "address"),
    [
        pytest.param("http://127.0.0.1:8080/order", "127.0.0.1", id="loopback"),
        pytest.param("http://localhost:8080/order", "127.0.0.1", id="localhost"),
        pytest.param("http://[::7f00:1]/order", "::7f00:1", id="v4-compatible-loopback"),
        pytest.param("http://10.0.0.7/order", "10.0.0.7", id="private"),
        pytest.param("http://169.254.169.254/latest", "169.254.169.254", id="metadata"),
    ],
)
def test_production_warns_of_a_tool_url_it_would_refuse(
    production_api: RunningApi, database: Database, url: str, address: str
) -> None:
    created = _create(production_api, database, _tool("https://93.184.216.34/ok", "ok"), _tool(url))
    assert len(created["warnings"]) == 1, created["warnings"]
    warning = created["warnings"][0]
    assert warning.startswith("tools.1.url: lookup will not be called")
    assert f"({address})" in warning and "THINNEST_TOOLS_ALLOW" in warning
    assert created["tools"][1]["url"].startswith(url.split("/order")[0])  # saved anyway


def test_dev_lets_loopback_tools_through_and_warns_of_private_ones(
    api: RunningApi, database: Database
) -> None:
    created = _create(
        api,
        database,
        _tool("http://127.0.0.1:8080/order", "order_status"),
        _tool("http://localhost:8080/x", "local"),
        _tool("http://10.0.0.7/order", "inside"),
        _tool("https://tools.example.com/x", "by_name"),  # judged when called (DNS)
    )
    assert [w.split(":")[0] for w in created["warnings"]] == ["tools.2.url"]
    assert "inside will not be called" in created["warnings"][0]


def test_a_patch_warns_too_and_a_good_config_has_no_warnings(
    production_api: RunningApi, database: Database
) -> None:
    tenant = new_owner(production_api, database)
    with tenant.http:
        resp = tenant.http.post("/agents", json={"name": "clean", "tools": []})
        assert resp.status_code == 201 and resp.json()["warnings"] == []
        patched = tenant.http.patch(
            f"/agents/{resp.json()['id']}", json={"tools": [_tool("http://[::1]:9/x")]}
        )
        assert patched.status_code == 200, patched.text
        assert [w.split(":")[0] for w in patched.json()["warnings"]] == ["tools.0.url"]
        # A read shows the agent, not the warnings of its last save.
        assert "warnings" not in tenant.http.get(f"/agents/{resp.json()['id']}").json()
