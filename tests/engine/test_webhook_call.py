"""A webhook receiver that hangs never holds a call: the engine only writes outbox rows, the
API sends. The real stack (worker, LiveKit, scripted LLM, a tool that answers 500): the call
runs and ends within the same timeouts as without webhooks, and once the receiver answers it
gets ``session.started``, ``tool.failed`` and ``session.ended`` (transcript, tool call)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import Tenant
from tests.engine.conftest import Worker, ask_the_weather, scripted_weather_agent, wait_final
from tests.webhook_receiver import Receiver
from thinnest.client import VoiceClient
from thinnest.contracts.webhooks import SessionEnded, ToolFailed
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

pytestmark = pytest.mark.integration


class Boom(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(json.dumps({"error": "internal"}).encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def boom_tool() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Boom)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/boom"
    server.shutdown()
    server.server_close()


def _delivered(tenant: Tenant, webhook_id: str, n: int, within: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        rows = tenant.http.get(f"/webhooks/{webhook_id}/deliveries").json()["data"]
        if sum(r["status"] == "delivered" for r in rows) >= n:
            return list(rows)
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


async def test_a_call_with_a_hanging_webhook_receiver_runs_and_ends_on_time(
    worker: Worker,
    tenant: Tenant,
    database: Database,
    boom_tool: str,
    speak,  # type: ignore[no-untyped-def]
) -> None:
    with Receiver(default=("hang", 300.0)) as receiver:
        resp = await asyncio.to_thread(tenant.http.post, "/webhooks", json={"url": receiver.url})
        assert resp.status_code == 201, resp.text
        hook = resp.json()
        scripted = ScriptedChatServer().start()
        try:
            agent = scripted_weather_agent(tenant, scripted.base_url, boom_tool, method="POST")
            t0 = time.monotonic()
            resp = await asyncio.to_thread(
                tenant.http.post, "/voice/start", json={"agent_id": agent["id"]}
            )
            assert resp.status_code == 200, resp.text
            assert time.monotonic() - t0 < 5
            started = resp.json()
            async with VoiceClient(started["livekit_url"], started["token"]) as client:
                call = await ask_the_weather(client, speak)
                assert call["error"] == "get_weather failed with HTTP 500", call
                await client.next_event(60, type="transcript", role="agent")
                # Meanwhile the receiver held the webhook requests it got.
                assert receiver.requests, "the receiver was sent session.started"
        finally:  # the caller hangs up (user_left)
            scripted.stop()
        row = await wait_final(database, started["session_id"], within=60)
        assert row.end_reason == "user_left"
        assert not any(r.json()["type"] == "session.ended" for r in receiver.requests)
        receiver.release.set()  # the receiver answers from now on
        rows = await asyncio.to_thread(_delivered, tenant, hook["id"], 3, 90)
        assert sorted(r["event_type"] for r in rows) == [
            "session.ended",
            "session.started",
            "tool.failed",
        ]
        bodies = {
            r.json()["type"]: r.json()["data"]
            for r in receiver.requests
            if r.json()["type"] in ("tool.failed", "session.ended")
        }
        failed = ToolFailed.model_validate(bodies["tool.failed"])
        assert failed.error == "get_weather failed with HTTP 500"
        ended = SessionEnded.model_validate(bodies["session.ended"])
        assert (ended.session_id, ended.end_reason) == (started["session_id"], "user_left")
        assert [c.error for c in ended.tool_calls if c.name == "get_weather"] == [
            "get_weather failed with HTTP 500"
        ]
        assert any(t.role == "user" for t in ended.transcript)
        assert any(t.role == "agent" for t in ended.transcript)
