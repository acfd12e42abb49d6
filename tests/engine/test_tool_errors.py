"""HTTP tools that fail give the LLM an error text (a ToolError), never an exception that
would end the call, and the error reaches the client and the stored session; the agent's
language reaches the providers that take one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from livekit.agents import llm
from pydantic import SecretStr

from tests.conftest import Tenant, free_port
from tests.engine.conftest import Worker, ask_the_weather, scripted_weather_agent, wait_final
from thinnest.client import VoiceClient
from thinnest.config import Settings
from thinnest.contracts.agent import HttpTool, ProviderChoice
from thinnest.engine.providers import resolve_choice
from thinnest.engine.tools import call_http_tool
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

pytestmark = pytest.mark.integration


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/slow":
            time.sleep(2)
        status, payload = {
            "/ok": (200, json.dumps({"echo": body, "auth": self.headers.get("X-Key")})),
            "/boom": (500, json.dumps({"error": "internal"})),
            "/garbage": (200, "<html>not json</html>"),
            "/slow": (200, "{}"),
        }.get(self.path, (404, "{}"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tool(url: str, **fields: object) -> HttpTool:
    return HttpTool.model_validate({"name": "t", "description": "d", "url": url, **fields})


async def test_a_working_tool_returns_compact_json_with_secret_headers(
    endpoint: str, tmp_path: object
) -> None:
    settings = Settings(
        data_dir=tmp_path,  # type: ignore[arg-type]
        tool_secrets={"KEY": SecretStr("s3cret")},
        tools_allow_private=True,  # the endpoint is on loopback
    )
    async with httpx.AsyncClient() as client:
        text = await call_http_tool(
            _tool(f"{endpoint}/ok", headers={"X-Key": "${secret:KEY}"}),
            {"city": "Paris"},
            settings=settings,
            client=client,
        )
    assert json.loads(text) == {"echo": {"city": "Paris"}, "auth": "s3cret"}


@pytest.mark.parametrize(
    ("path", "limit", "message"),
    [
        pytest.param("/boom", 5, "failed with HTTP 500", id="http-500"),
        pytest.param("/garbage", 5, "not JSON", id="not-json"),
        pytest.param("/slow", 0.5, "timed out after 0.5 s", id="timeout"),
    ],
)
async def test_failing_tools_raise_a_tool_error_for_the_llm(
    endpoint: str, tmp_path: object, path: str, limit: float, message: str
) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(llm.ToolError, match=message):
            await call_http_tool(
                _tool(f"{endpoint}{path}", timeout=limit),
                {},
                settings=Settings(data_dir=tmp_path, tools_allow_private=True),
                client=client,
            )  # type: ignore[arg-type]


async def test_a_loopback_tool_is_refused_in_production(endpoint: str, tmp_path: object) -> None:
    production = Settings(
        data_dir=tmp_path,  # type: ignore[arg-type]
        env="production",
        livekit_api_key="APIprod",
        livekit_api_secret=SecretStr("p" * 40),
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(llm.ToolError, match="not public"):
            await call_http_tool(_tool(f"{endpoint}/ok"), {}, settings=production, client=client)
        # dev (loopback only) lets a developer's tool server on localhost be called
        text = await call_http_tool(
            _tool(f"{endpoint}/ok"),
            {"q": 1},
            settings=Settings(data_dir=tmp_path, env="dev"),  # type: ignore[arg-type]
            client=client,
        )
    assert json.loads(text)["echo"] == {"q": 1}


async def test_unreachable_tool_and_missing_secret(tmp_path: object) -> None:
    settings = Settings(data_dir=tmp_path, tools_allow_private=True)  # type: ignore[arg-type]
    async with httpx.AsyncClient() as client:
        with pytest.raises(llm.ToolError, match="could not be reached"):
            await call_http_tool(
                _tool(f"http://127.0.0.1:{free_port()}/x"), {}, settings=settings, client=client
            )
        with pytest.raises(llm.ToolError, match="secret 'NOPE' is not set"):
            await call_http_tool(
                _tool("http://127.0.0.1:9/x", headers={"A": "${secret:NOPE}"}),
                {},
                settings=settings,
                client=client,
            )


@pytest.mark.parametrize(
    ("name", "options", "language", "expected"),
    [
        pytest.param("whisper", {}, "en-US", {"language": "en"}, id="base-code"),
        pytest.param("whisper", {"language": "de"}, "fr", {"language": "de"}, id="explicit-kept"),
        pytest.param(
            "whisper",
            {"model": "tiny.en"},
            "fr",
            {"model": "tiny.en"},
            id="unsupported-keeps-default",
        ),
    ],
)
def test_agent_language_reaches_the_stt(
    name: str, options: dict[str, str], language: str, expected: dict[str, str]
) -> None:
    choice = resolve_choice("stt", ProviderChoice(name=name, options=options), language)
    assert choice.options == expected


async def test_a_failed_tool_calls_error_reaches_the_client_and_the_session_detail(
    worker: Worker,
    tenant: Tenant,
    database: Database,
    endpoint: str,
    speak,  # type: ignore[no-untyped-def]
) -> None:
    """The real stack: a tool that answers HTTP 500. The client gets the ``tool_call`` event
    with its ``error``, the LLM gets the error text, and the stored call (served by the
    session detail) keeps it."""
    scripted = ScriptedChatServer().start()
    try:
        agent = scripted_weather_agent(tenant, scripted.base_url, f"{endpoint}/boom", method="POST")
        resp = await asyncio.to_thread(
            tenant.http.post, "/voice/start", json={"agent_id": agent["id"]}
        )
        started = resp.json()
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            call = await ask_the_weather(client, speak)
            assert call["error"] == "get_weather failed with HTTP 500", call
            assert call["arguments"]["city"].lower().startswith("paris")
            await client.next_event(60, type="transcript", role="agent")
            # The LLM was handed the error text as the tool's result.
            tool_results = [
                m["content"]
                for r in scripted.requests
                for m in r["messages"]
                if m["role"] == "tool"
            ]
            assert any("failed with HTTP 500" in str(t) for t in tool_results), tool_results
    finally:  # the caller hangs up (user_left)
        scripted.stop()
    await wait_final(database, started["session_id"], within=60)
    detail = await asyncio.to_thread(tenant.http.get, f"/voice/sessions/{started['session_id']}")
    assert detail.status_code == 200, detail.text
    stored = [c for c in detail.json()["tool_calls"] if c["name"] == "get_weather"]
    assert stored and stored[0]["error"] == "get_weather failed with HTTP 500", stored
    assert stored[0]["result"] is None
