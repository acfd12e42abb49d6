"""The demo routes answer only their configured public origin, never the request's own ``Host``:
a DNS-rebinding page (``evil.example`` resolving to the API's address) sends a ``Host`` and an
``Origin`` that agree with each other, and must still be refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningApi, make_settings, start_api
from tests.security.conftest import NO_WORKER_AGENT, new_owner
from thinnest.config import DEV_CREDENTIALS_FILE
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

PUBLIC = "https://voice.example.com"


def _demo_api(
    tmp: Path, livekit: LiveKitDevServer, database: Database, **overrides: object
) -> tuple[RunningApi, str]:
    settings = make_settings(tmp, livekit, web_demo=True, agent_name=NO_WORKER_AGENT, **overrides)
    running = start_api(settings, database)
    owner = new_owner(running, database)
    agent = owner.create_agent(name="demo")
    owner.http.close()
    (tmp / DEV_CREDENTIALS_FILE).write_text(json.dumps({"api_key": owner.key}))
    return running, str(agent["id"])


@pytest.fixture(scope="module")
def dev_demo(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningApi, str]]:
    """env=dev, no public URL configured: the loopback origins of the API's port."""
    running, agent = _demo_api(tmp_path_factory.mktemp("demo-dev"), livekit_server, database)
    yield running, agent
    running.stop()


@pytest.fixture(scope="module")
def public_demo(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningApi, str]]:
    """A production API with the demo turned on, behind its public URL."""
    running, agent = _demo_api(
        tmp_path_factory.mktemp("demo-public"),
        livekit_server,
        database,
        env="production",
        public_base_url=PUBLIC,
    )
    yield running, agent
    running.stop()


def _call(
    api: RunningApi, method: str, path: str, host: str, origin: str | None, agent: str
) -> httpx.Response:
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    body = {"agent_id": agent} if method == "POST" else None
    with httpx.Client(base_url=api.url, timeout=30) as http:
        return http.request(method, path, headers=headers, json=body)


ROUTES = [
    pytest.param("GET", "/demo", id="page"),
    pytest.param("GET", "/demo/agents", id="agents"),
    pytest.param("POST", "/demo/session", id="session"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://evil.example:{port}", id="rebound-origin"),
        pytest.param(None, id="no-origin"),
    ],
)
def test_a_dns_rebinding_page_is_refused(
    dev_demo: tuple[RunningApi, str], method: str, path: str, origin: str | None
) -> None:
    api, agent = dev_demo
    port = api.settings.api_port
    host = f"evil.example:{port}"
    resp = _call(api, method, path, host, origin and origin.format(port=port), agent)
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "host_not_allowed"
    assert resp.json()["error"]["field"] == "host"
    assert "token" not in resp.text


@pytest.mark.parametrize("loopback", ["127.0.0.1", "localhost", "[::1]"])
def test_the_loopback_origins_of_the_dev_api_are_served(
    dev_demo: tuple[RunningApi, str], loopback: str
) -> None:
    api, agent = dev_demo
    own = f"{loopback}:{api.settings.api_port}"
    assert _call(api, "GET", "/demo", own, None, agent).status_code == 200
    listed = _call(api, "GET", "/demo/agents", own, f"http://{own}", agent)
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()] == [agent]


def test_a_foreign_origin_on_the_right_host_is_refused(dev_demo: tuple[RunningApi, str]) -> None:
    api, agent = dev_demo
    own = f"127.0.0.1:{api.settings.api_port}"
    resp = _call(api, "POST", "/demo/session", own, "https://evil.example", agent)
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "origin_not_allowed"


def test_behind_a_public_url_only_that_origin_is_served(
    public_demo: tuple[RunningApi, str],
) -> None:
    api, agent = public_demo
    listed = _call(api, "GET", "/demo/agents", "voice.example.com", PUBLIC, agent)
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()] == [agent]
    # The API's own loopback address is no demo origin outside dev.
    loop = f"127.0.0.1:{api.settings.api_port}"
    resp = _call(api, "GET", "/demo/agents", loop, f"http://{loop}", agent)
    assert resp.status_code == 403, resp.text
    # Nor is a page that rebinds its own name and sends its own origin.
    evil = _call(api, "GET", "/demo/agents", "evil.example", "https://evil.example", agent)
    assert evil.status_code == 403, evil.text
    wrong_scheme = _call(
        api, "GET", "/demo/agents", "voice.example.com", "http://voice.example.com", agent
    )
    assert wrong_scheme.status_code == 403, wrong_scheme.text
