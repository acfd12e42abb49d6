"""Tools in a live call: an HTTP tool against a local server, and the built-in end_call."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import pytest

from tests.conftest import Tenant
from tests.engine.conftest import (
    ToolServer,
    Worker,
    ask_the_weather,
    scripted_weather_agent,
    wait_final,
    weather_tool,
)
from thinnest.client import VoiceClient
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

pytestmark = pytest.mark.integration


def _forecast(query: dict[str, list[str]]) -> dict[str, object]:
    city = (query.get("city") or ["?"])[0]
    return {"city": city, "forecast": "sunny", "temperature_c": 21}


@pytest.fixture
def weather() -> Iterator[ToolServer]:
    """A local ``get_weather`` endpoint that records what it was asked."""
    with ToolServer("/weather", _forecast) as server:
        yield server


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedChatServer]:
    """An OpenAI-compatible LLM that calls tools on cue. The 0.5B offline model rarely
    decides to call a tool, so this test drives the real openai provider with it."""
    server = ScriptedChatServer().start()
    yield server
    server.stop()


async def test_http_tool_then_end_call(
    worker: Worker,
    tenant: Tenant,
    database: Database,
    weather: ToolServer,
    scripted_llm: ScriptedChatServer,
    speak,
) -> None:
    agent = scripted_weather_agent(
        tenant,
        scripted_llm.base_url,
        weather.url,
        instructions=(
            "You are a weather assistant. For any weather question call get_weather "
            "with the city. When the user says goodbye, call end_call."
        ),
    )
    resp = await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    started = resp.json()
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        call = await ask_the_weather(client, speak)
        heard = [
            m["content"]
            for r in scripted_llm.requests
            for m in r["messages"]
            if m["role"] == "user"
        ]
        assert call["arguments"]["city"].lower().startswith("paris"), f"the LLM was told: {heard}"
        assert "error" not in call
        reply = await client.next_event(120, type="transcript", role="agent")
        assert reply["text"].strip()
        assert weather.requests and weather.requests[0]["city"][0].lower().startswith("paris")

        await asyncio.sleep(3)
        await client.play_wav(speak("Thank you, goodbye. Please end the call."))
        try:
            ended = await client.next_event(120, type="call_ended")
        except TimeoutError:
            pytest.fail(
                "the goodbye went unanswered; the LLM was asked:\n"
                + "\n".join(json.dumps(r["messages"][1:]) for r in scripted_llm.requests)
                + "\nworker log:\n"
                + worker.text()[-6000:]
            )
        assert ended["reason"] == "agent_ended"

    row = await wait_final(database, started["session_id"])
    assert row.end_reason == "agent_ended"
    names = [c.name for c in row.tool_calls]
    assert names[0] == "get_weather" and "end_call" in names
    assert json.loads(row.tool_calls[0].result)["forecast"] == "sunny"


#: Tool-call syntax as it could reach the caller: ``name(...)``, tags, a JSON call.
_TOOL_SYNTAX = re.compile(r"\b\w+\s*\(\s*[{\"')]|<\s*/?\s*tool_call|\"name\"\s*:|\"arguments\"")


async def test_the_shipped_model_never_says_tool_syntax_in_a_call_with_a_tool(
    worker: Worker,
    tenant: Tenant,
    database: Database,
    weather: ToolServer,
    speak,
) -> None:
    """The offline llama, a tool on loopback, two spoken questions: whatever the model
    decides, no agent line (sent or stored) carries tool-call syntax."""
    agent = tenant.create_agent(
        providers={"stt": {"name": "whisper", "options": {"model": "base"}}},
        greeting="Hi, ask me about the weather.",
        instructions="You are a weather assistant. Use the tools.",
        tools=[weather_tool(weather.url)],
        max_duration=150,
    )
    resp = await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    started = resp.json()
    said: list[str] = []
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await client.next_event(90, type="transcript", role="agent")
        for question in ("What is the weather in Paris right now?", "What did you just do?"):
            await asyncio.sleep(2)
            await client.play_wav(speak(question))
            said.append((await client.next_event(120, type="transcript", role="agent"))["text"])
    row = await wait_final(database, started["session_id"], within=60)
    stored = [t.text for t in row.turns if t.role == "agent"]
    print(f"the agent said {said}; tools called: {[c.name for c in row.tool_calls]}")
    assert not [s for s in said + stored if _TOOL_SYNTAX.search(s)], (said, stored)
