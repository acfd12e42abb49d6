"""The ``openai`` LLM against a local server speaking OpenAI chat completions (SSE).

The plugin's real code path runs: the OpenAI SDK, HTTP, server-sent events, tool-call
deltas, error statuses and timeouts. Only the far end is ours.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from livekit.agents import APIConnectOptions, APIStatusError, APITimeoutError, llm

from thinnest.providers import registry

from .conftest import get_weather, make_settings, serve, weather_chat

pytestmark = pytest.mark.integration

_NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)


@dataclass
class FakeOpenAI:
    """What the fake endpoint answers next, and what it was asked."""

    url: str = ""
    reply: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "qwen-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@pytest.fixture
async def fake_openai(unused_tcp_port: int) -> AsyncIterator[FakeOpenAI]:
    state = FakeOpenAI(url=f"http://127.0.0.1:{unused_tcp_port}/v1")

    async def completions(request: web.Request) -> web.StreamResponse:
        state.requests.append(await request.json())
        state.headers.append(dict(request.headers))
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.status != 200:
            body = {"error": {"message": "model overloaded", "type": "server_error"}}
            return web.json_response(body, status=state.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in state.reply:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {
            **_chunk({}),
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }
        await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serve(app, unused_tcp_port):
        yield state


@pytest.fixture
async def built() -> AsyncIterator[list[llm.LLM]]:
    """LLMs built by a test, closed after it (they hold an HTTP connection pool)."""
    models: list[llm.LLM] = []
    yield models
    for model in models:
        await model.aclose()


def _build(fake: FakeOpenAI, built: list[llm.LLM], tmp_path, **options: Any) -> llm.LLM:
    settings = make_settings(tmp_path, openai_api_key="sk-test")
    opts = {"model": "qwen-test", "base_url": fake.url, **options}
    model = registry.build("llm", "openai", opts, settings=settings)
    built.append(model)
    return model


async def test_streams_text_from_the_endpoint(fake_openai: FakeOpenAI, tmp_path, built) -> None:
    fake_openai.reply = [
        _chunk({"role": "assistant", "content": "It is "}),
        _chunk({"content": "sunny."}),
        _chunk({}, finish="stop"),
    ]
    model = _build(fake_openai, built, tmp_path)
    async with model.chat(chat_ctx=weather_chat(), conn_options=_NO_RETRY) as stream:
        text = "".join(
            [chunk.delta.content async for chunk in stream if chunk.delta and chunk.delta.content]
        )
    assert text == "It is sunny."
    sent = fake_openai.requests[0]
    assert sent["model"] == "qwen-test"
    assert sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"


async def test_sends_the_options_that_are_set_and_only_those(
    fake_openai: FakeOpenAI, tmp_path, built
) -> None:
    fake_openai.reply = [_chunk({"role": "assistant", "content": "Hi."}), _chunk({}, "stop")]
    for options in ({"temperature": 0.3, "max_completion_tokens": 9}, {}):
        model = _build(fake_openai, built, tmp_path, **options)
        async with model.chat(chat_ctx=weather_chat(), conn_options=_NO_RETRY) as stream:
            assert [c async for c in stream]
    set_, unset = fake_openai.requests
    assert (set_["temperature"], set_["max_completion_tokens"]) == (0.3, 9)
    assert "temperature" not in unset and "max_completion_tokens" not in unset


async def test_returns_tool_calls_streamed_in_pieces(
    fake_openai: FakeOpenAI, tmp_path, built
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function"}
    fake_openai.reply = [
        _chunk(
            {
                "role": "assistant",
                "tool_calls": [{**call, "function": {"name": "get_weather", "arguments": '{"ci'}}],
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        _chunk({}, finish="tool_calls"),
    ]
    model = _build(fake_openai, built, tmp_path)
    calls: list[llm.FunctionToolCall] = []
    async with model.chat(
        chat_ctx=weather_chat(), tools=[get_weather], conn_options=_NO_RETRY
    ) as st:
        async for chunk in st:
            if chunk.delta:
                calls.extend(chunk.delta.tool_calls)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    tools = fake_openai.requests[0]["tools"]
    assert tools[0]["function"]["name"] == "get_weather"


async def test_error_status_reaches_the_session(fake_openai: FakeOpenAI, tmp_path, built) -> None:
    fake_openai.status = 503
    model = _build(fake_openai, built, tmp_path)
    with pytest.raises(APIStatusError) as err:
        async with model.chat(chat_ctx=weather_chat(), conn_options=_NO_RETRY) as stream:
            async for _ in stream:
                pass
    assert err.value.status_code == 503
    assert err.value.retryable


async def test_slow_endpoint_times_out(fake_openai: FakeOpenAI, tmp_path, built) -> None:
    fake_openai.delay = 3.0
    fake_openai.reply = [_chunk({"content": "late"})]
    model = _build(fake_openai, built, tmp_path)
    quick = APIConnectOptions(max_retry=0, timeout=0.5)
    with pytest.raises(APITimeoutError):
        async with model.chat(chat_ctx=weather_chat(), conn_options=quick) as stream:
            async for _ in stream:
                pass


async def test_the_sdk_clients_own_timeout_is_the_provider_timeout(
    fake_openai: FakeOpenAI, tmp_path, built
) -> None:
    """A request sent without a timeout of its own (the plugin's chat passes the session's)
    gives up on a silent endpoint after ``provider_timeout``: the client's timeout is one
    its HTTP library (httpx2) applies."""
    import openai

    fake_openai.delay = 5.0
    fake_openai.reply = [_chunk({"content": "late"})]
    settings = make_settings(tmp_path, openai_api_key="sk-test", provider_timeout=1.0)
    model = registry.build(
        "llm", "openai", {"model": "qwen-test", "base_url": fake_openai.url}, settings=settings
    )
    built.append(model)
    client = model._client  # the plugin's openai.AsyncClient
    asked = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="qwen-test", messages=[{"role": "user", "content": "hi"}]
        )
    assert time.monotonic() - asked < 4.0


async def test_unreachable_endpoint_is_a_connection_error(tmp_path, built, unused_tcp_port) -> None:
    from livekit.agents import APIConnectionError

    fake = FakeOpenAI(url=f"http://127.0.0.1:{unused_tcp_port}/v1")
    model = _build(fake, built, tmp_path)
    with pytest.raises(APIConnectionError):
        async with model.chat(chat_ctx=weather_chat(), conn_options=_NO_RETRY) as stream:
            async for _ in stream:
                pass
