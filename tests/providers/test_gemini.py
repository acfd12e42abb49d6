"""The ``gemini`` LLM against a local server speaking the Gemini API (streamGenerateContent, SSE).

The plugin and the google-genai SDK run for real: key header, request body, streamed
text and function-call parts, usage, and error statuses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from livekit.agents import APIConnectOptions, APIStatusError, llm

from thinnest.providers import registry

from .conftest import get_weather, make_settings, serve, weather_chat

pytestmark = [
    pytest.mark.integration,
    # google-genai subclasses aiohttp.ClientSession, which aiohttp deprecates: not ours.
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
    ),
]

_OPTS = APIConnectOptions(max_retry=0, timeout=5.0)


@dataclass
class FakeGemini:
    """The fake endpoint: what it streams back, and what it was asked."""

    url: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    requests: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)


def _event(parts: list[dict[str, Any]], **extra: Any) -> bytes:
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0, **extra}
    return f"data: {json.dumps({'candidates': [candidate]})}\r\n\r\n".encode()


@pytest.fixture
async def fake_gemini(unused_tcp_port: int) -> AsyncIterator[FakeGemini]:
    state = FakeGemini(url=f"http://127.0.0.1:{unused_tcp_port}")

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        state.requests.append((request.path, body, request.headers.get("x-goog-api-key")))
        if state.status != 200:
            error = {"error": {"code": state.status, "message": "quota", "status": "EXHAUSTED"}}
            return web.json_response(error, status=state.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for part in state.parts:
            await response.write(_event([part]))
        usage = {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10}
        done = {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
        }
        await response.write(f"data: {json.dumps(done)}\r\n\r\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/{version}/models/{call}", generate)
    async with serve(app, unused_tcp_port):
        yield state


def _gemini(fake: FakeGemini, tmp_path) -> llm.LLM:
    settings = make_settings(tmp_path, google_api_key="g-key")
    options = {"model": "gemini-test", "base_url": fake.url}
    return registry.build("llm", "gemini", options, settings=settings)


async def test_streams_text(fake_gemini: FakeGemini, tmp_path) -> None:
    fake_gemini.parts = [{"text": "It is "}, {"text": "sunny."}]
    model = _gemini(fake_gemini, tmp_path)
    text, usage = "", None
    async with model.chat(chat_ctx=weather_chat(), conn_options=_OPTS) as stream:
        async for chunk in stream:
            text += (chunk.delta.content or "") if chunk.delta else ""
            usage = chunk.usage or usage
    await model.aclose()
    assert text == "It is sunny."
    assert usage is not None and usage.total_tokens == 10
    path, body, key = fake_gemini.requests[0]
    assert path.endswith("/models/gemini-test:streamGenerateContent")
    assert key == "g-key"
    assert body["contents"][-1]["parts"][0]["text"] == "What is the weather in Paris?"
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."


async def test_sends_the_options_that_are_set(fake_gemini: FakeGemini, tmp_path) -> None:
    fake_gemini.parts = [{"text": "Hi."}]
    settings = make_settings(tmp_path, google_api_key="g-key")
    options = {"base_url": fake_gemini.url, "temperature": 0.3, "max_output_tokens": 9}
    model = registry.build("llm", "gemini", options, settings=settings)
    async with model.chat(chat_ctx=weather_chat(), conn_options=_OPTS) as stream:
        assert [c async for c in stream]
    await model.aclose()
    config = fake_gemini.requests[0][1]["generationConfig"]
    assert (config["temperature"], config["maxOutputTokens"]) == (0.3, 9)


async def test_returns_function_calls(fake_gemini: FakeGemini, tmp_path) -> None:
    fake_gemini.parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    model = _gemini(fake_gemini, tmp_path)
    calls: list[llm.FunctionToolCall] = []
    async with model.chat(
        chat_ctx=weather_chat(), tools=[get_weather], conn_options=_OPTS
    ) as stream:
        async for chunk in stream:
            if chunk.delta:
                calls.extend(chunk.delta.tool_calls)
    await model.aclose()
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    declared = fake_gemini.requests[0][1]["tools"][0]["functionDeclarations"]
    assert declared[0]["name"] == "get_weather"


async def test_rate_limit_is_a_retryable_status(fake_gemini: FakeGemini, tmp_path) -> None:
    fake_gemini.status = 429
    model = _gemini(fake_gemini, tmp_path)
    with pytest.raises(APIStatusError) as err:
        async with model.chat(chat_ctx=weather_chat(), conn_options=_OPTS) as stream:
            async for _ in stream:
                pass
    await model.aclose()
    assert err.value.status_code == 429
    assert err.value.retryable
