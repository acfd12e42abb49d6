"""Model services that are down: the API refuses calls with 503 instead of dispatching a call
that could only apologise, and ``/readyz`` names them."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, make_settings, start_api
from thinnest.contracts.agent import AgentConfig
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import agents, keys, workers
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _start(api_url: str, key: str, agent: str) -> httpx.Response:
    return httpx.post(
        f"{api_url}/voice/start",
        json={"agent_id": agent},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_start_is_refused_while_every_workers_models_are_down(
    fresh_database: Database, livekit_server: LiveKitDevServer, tmp_path: Path
) -> None:
    pool = f"pool-{secrets.token_hex(3)}"
    down = "http://127.0.0.1:8790: llm down"
    with fresh_database.session() as db:
        owner = keys.get_or_create_owner(db, "models")
        agent = agents.create_agent(db, owner.id, AgentConfig(name="a")).id
        key = keys.create_key(db, owner)[1]
        # What a `thinnest worker` writes when its model services' /healthz says the LLM is down.
        workers.heartbeat(db, f"{pool}-1", agent_name=pool, max_jobs=4, models_status=down)
    settings = make_settings(tmp_path, livekit_server, require_worker=True, agent_name=pool)
    api = start_api(settings, fresh_database)
    try:
        refused = _start(api.url, key, agent)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "models_unavailable"
        assert "llm down" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # A second worker whose services answer takes the call.
        with fresh_database.session() as db:
            workers.heartbeat(db, f"{pool}-2", agent_name=pool, max_jobs=4, models_status="ok")
        started = _start(api.url, key, agent)
        assert started.status_code == 200, started.text
    finally:
        api.stop()


def test_readyz_names_model_services_that_do_not_answer(
    database: Database, livekit_server: LiveKitDevServer, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(tmp_path, livekit_server, models_url=f"http://127.0.0.1:{port}")
    api = start_api(settings, database)
    try:
        answer = httpx.get(f"{api.url}/readyz", timeout=30)
    finally:
        api.stop()
    assert answer.status_code == 503
    body = answer.json()
    assert "unreachable" in body["checks"]["models"]
    assert body["checks"]["database"] == "ok" and body["checks"]["livekit"] == "ok"
    assert "models" in body["error"]["message"]
