"""The shared LLM for real: llama-server started from ``.tools/bin``, and the remote ``llama``
client answering through it (text, a tool call, parallel slots), with clear errors.

Greedy sampling; the assertions are about what the product promises (an answer, a valid call,
answers at once), with margins, not one CPU's exact words or timings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from livekit.agents import APIConnectionError, APIConnectOptions, llm

from tests.conftest import free_port
from tests.providers.conftest import make_settings, offline, serve  # noqa: F401 (a fixture)
from thinnest.config import Settings
from thinnest.errors import UnavailableError
from thinnest.modelsvc.llama_server import LlamaServer, find_llama_server
from thinnest.providers import Prefillable, registry
from thinnest.providers.llama import DEFAULT_SYSTEM_PROMPT, RemoteLlamaLLM
from thinnest.providers.llama.remote import flat_chat

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline")]

_GREEDY = {"temperature": 0.0, "max_tokens": 40}


@llm.function_tool
async def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: the city's name, e.g. Paris.
    """
    return "sunny, 24 degrees"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The checkout's models cache, which `make setup` joins and checks (as the other model
    # service tests do): a private one would join the 491 MB GGUF again.
    return make_settings(
        tmp_path_factory.mktemp("llama-server"),
        models_dir=Path(__file__).resolve().parents[2] / ".thinnest" / "models",
        models_llm_slots=4,
    )


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[LlamaServer]:
    try:
        find_llama_server(settings.llama_server_bin)
    except UnavailableError as exc:  # `make setup` builds it; the tests need it
        pytest.fail(f"no llama-server binary (run `make setup`): {exc.message}")
    server = LlamaServer(settings)
    started = time.perf_counter()
    server.start()
    assert server.process is not None
    print(
        f"\nllama-server ready in {time.perf_counter() - started:.2f}s, "
        f"RSS {_rss_mb(server.process.pid):.0f} MB"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def remote(server: LlamaServer, settings: Settings) -> AsyncIterator[llm.LLM]:
    # Straight at llama-server: it serves /v1 as the model service does.
    client = settings.model_copy(update={"models_url": server.url})
    model = registry.build("llm", "llama", _GREEDY, settings=client)
    yield model
    await model.aclose()


def _ctx(*turns: tuple[str, str]) -> llm.ChatContext:
    ctx = llm.ChatContext()
    for role, text in turns:
        ctx.add_message(role=role, content=text)  # type: ignore[arg-type]
    return ctx


async def _run(
    model: llm.LLM, ctx: llm.ChatContext, tools: list[llm.Tool] | None = None
) -> tuple[str, list[llm.FunctionToolCall], float]:
    started = time.perf_counter()
    ttft = None
    text, calls = "", []
    async with model.chat(chat_ctx=ctx, tools=tools or []) as stream:
        async for chunk in stream:
            if chunk.delta is None:
                continue
            if ttft is None and (chunk.delta.content or chunk.delta.tool_calls):
                ttft = time.perf_counter() - started
            text += chunk.delta.content or ""
            calls.extend(chunk.delta.tool_calls)
    assert ttft is not None, "no answer at all"
    return text, calls, ttft


def test_serves_the_model_under_its_name(server: LlamaServer) -> None:
    assert server.healthy()
    models = httpx.get(f"{server.url}/v1/models", timeout=5).json()
    assert "qwen2.5-coder-0.5b-instruct" in json.dumps(models)


async def test_remote_llama_streams_an_answer(remote: llm.LLM) -> None:
    assert isinstance(remote, RemoteLlamaLLM)
    ctx = _ctx(
        ("system", "You are a friendly assistant. Answer in one short sentence."),
        ("user", "What is the capital of France?"),
    )
    started = time.perf_counter()
    pieces: list[str] = []
    async with remote.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                pieces.append(chunk.delta.content)
                if len(pieces) == 1:
                    ttft = time.perf_counter() - started
    text = "".join(pieces)
    print(f"\nanswer in {time.perf_counter() - started:.2f}s, TTFT {ttft:.2f}s: {text!r}")
    assert "paris" in text.lower()
    assert len(pieces) >= 3  # streamed as it comes, not held back to the end


async def _usage(
    model: llm.LLM, ctx: llm.ChatContext, tools: list[llm.Tool] | None = None
) -> llm.CompletionUsage:
    usage = None
    async with model.chat(chat_ctx=ctx, tools=tools or []) as stream:
        async for chunk in stream:
            usage = chunk.usage or usage
    assert usage is not None
    return usage


async def test_prefill_puts_the_calls_prompt_in_a_slots_cache(remote: llm.LLM) -> None:
    assert isinstance(remote, Prefillable)  # the engine prefills while the greeting plays

    def chat(nonce: str, question: str | None) -> llm.ChatContext:
        rules = " ".join(f"Rule {i}: be brief and kind to caller {nonce}." for i in range(4))
        ctx = _ctx(("system", f"You are a weather assistant ({nonce}). {rules}"))
        ctx.add_message(role="assistant", content="Hello! How can I help?")
        if question:
            ctx.add_message(role="user", content=question)
        return ctx

    prefilled = secrets.token_hex(4)
    await remote.prefill(chat(prefilled, None), [get_weather])
    warm = await _usage(remote, chat(prefilled, "Is it warm in Rome?"), [get_weather])
    cold = await _usage(remote, chat(secrets.token_hex(4), "Is it warm in Rome?"), [get_weather])
    # The instructions, tools and greeting (well over 100 tokens) came from the cache.
    assert warm.prompt_cached_tokens > cold.prompt_cached_tokens + 100, (warm, cold)


async def test_max_tokens_caps_the_answer(server: LlamaServer, settings: Settings) -> None:
    client = settings.model_copy(update={"models_url": server.url})
    short = registry.build("llm", "llama", {**_GREEDY, "max_tokens": 5}, settings=client)
    try:
        ctx = _ctx(("user", "Count from one to fifty in words, please."))
        usage = await _usage(short, ctx)
    finally:
        await short.aclose()
    assert 0 < usage.completion_tokens <= 5


async def test_a_tool_call_written_as_text_becomes_a_function_call(remote: llm.LLM) -> None:
    ctx = _ctx(
        ("system", "You are a weather assistant. Use the tools."),
        ("user", "What is the weather in Paris right now?"),
    )
    text, calls, _ = await _run(remote, ctx, [get_weather])
    assert [c.name for c in calls] == ["get_weather"], text
    assert json.loads(calls[0].arguments)["city"].lower() == "paris"
    assert "{" not in text  # the JSON is never spoken


async def test_answers_from_a_tool_result_in_words(remote: llm.LLM) -> None:
    ctx = _ctx(
        ("system", "You are a weather assistant. Use the tools."),
        ("user", "What is the weather in Paris right now?"),
    )
    ctx.insert(
        llm.FunctionCall(call_id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    )
    ctx.insert(
        llm.FunctionCallOutput(
            call_id="call_1", name="get_weather", output="sunny, 24 degrees", is_error=False
        )
    )
    text, calls, _ = await _run(remote, ctx, [get_weather])
    assert calls == []
    assert "sunny" in text.lower() or "24" in text


def test_past_calls_are_sent_as_facts_not_as_calls() -> None:
    ctx = _ctx(("user", "What is the weather in Paris?"))
    ctx.insert(
        llm.FunctionCall(call_id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    )
    ctx.insert(
        llm.FunctionCallOutput(call_id="call_1", name="get_weather", output="sunny", is_error=False)
    )
    flat = flat_chat(ctx, [get_weather])
    assert [i.type for i in flat.items] == ["message", "message"]
    system, user = flat.items
    assert system.role == "system" and system.text_content is not None
    assert system.text_content.startswith(DEFAULT_SYSTEM_PROMPT + "\n\n# Tools\n")
    assert '"name": "get_weather"' in system.text_content  # described as the in-process LLM does
    assert user.role == "user" and user.text_content is not None
    assert user.text_content.startswith("What is the weather in Paris?\nFacts: sunny\n")
    assert "get_weather" not in user.text_content


def _most_slots_at_once(lines: list[str]) -> int:
    """How many slots decoded at the same moment, from llama-server's log (the pinned
    version's ``launch_slot_: id N`` and ``release: id N`` lines)."""
    busy: set[str] = set()
    most = 0
    for line in lines:
        if found := re.search(r"slot\s+launch_slot_: id\s+(\d+)", line):
            busy.add(found.group(1))
            most = max(most, len(busy))
        elif found := re.search(r"slot\s+release: id\s+(\d+)", line):
            busy.discard(found.group(1))
    return most


def _long_chat(pairs: int) -> llm.ChatContext:
    ctx = _ctx(("system", "Be brief."))
    for i in range(pairs):
        ctx.add_message(role="user", content=f"Tell me fact number {i} about the sea, please.")
        ctx.add_message(role="assistant", content=f"Fact {i}: the sea is full of fish and whales.")
    ctx.add_message(role="user", content="Thanks! What colour is the sea?")
    return ctx


def test_the_oldest_turns_are_dropped_to_fit_the_budget() -> None:
    flat = flat_chat(_long_chat(150), budget=500)
    texts = [item.text_content for item in flat.items]
    assert texts[0] == "Be brief." and texts[-1] == "Thanks! What colour is the sea?"
    assert 4 < len(texts) < 60
    assert sum(len(t or "") for t in texts) < 500 * 3  # at most 3 characters a token


async def test_a_chat_longer_than_a_slot_is_cut_to_fit(
    remote: llm.LLM, settings: Settings, server: LlamaServer
) -> None:
    # 150 exchanges are about 5000 tokens: the server refuses them whole (400), its slot
    # holding 4096. A small context keeps this test quick: the prompt sent is the last turns.
    client = settings.model_copy(update={"models_url": server.url})
    options = {**_GREEDY, "context_tokens": 512, "max_tokens": 8}
    small = registry.build("llm", "llama", options, settings=client)
    try:
        text, calls, _ = await _run(small, _long_chat(150))
    finally:
        await small.aclose()
    assert text.strip() and calls == []


async def test_a_chat_the_estimate_misjudges_is_cut_again_on_the_servers_word(
    settings: Settings,
) -> None:
    # A far end that counts a token per character (a script of few characters a token, as
    # Chinese is) and answers as llama-server does when the prompt exceeds its slot.
    asked: list[int] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        asked.append(len(body["messages"]))
        tokens = sum(len(m["content"]) for m in body["messages"])
        if tokens > 4096:
            error = {
                "code": 400,
                "message": f"request ({tokens} tokens) exceeds the available context size "
                "(4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
            }
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        delta = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "qwen2.5-coder-0.5b-instruct",
            "choices": [{"index": 0, "delta": {"content": "It is blue."}, "finish_reason": None}],
        }
        await response.write(f"data: {json.dumps(delta)}\n\ndata: [DONE]\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    port = free_port()
    ctx = _ctx(("system", "Be brief."))
    for i in range(60):
        ctx.add_message(role="user", content="海" * 60 + str(i))
        ctx.add_message(role="assistant", content="鱼" * 60 + str(i))
    ctx.add_message(role="user", content="What colour is the sea?")
    client = settings.model_copy(update={"models_url": f"http://127.0.0.1:{port}"})
    model = registry.build("llm", "llama", _GREEDY, settings=client)
    try:
        async with serve(app, port):
            text, _, _ = await _run(model, ctx)
    finally:
        await model.aclose()
    assert text == "It is blue."
    assert len(asked) >= 2 and asked == sorted(asked, reverse=True), asked  # cut, then cut more
    assert asked[-1] < asked[0]


async def test_four_requests_are_answered_at_once(
    remote: llm.LLM, caplog: pytest.LogCaptureFixture
) -> None:
    # Read from the log, not by polling /slots: that stalls the server's loop for seconds.
    caplog.set_level(logging.DEBUG, logger="thinnest.modelsvc.llama")
    questions = ["a colour", "a fruit", "an animal", "a country"]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(
            _run(remote, _ctx(("system", "Answer in a few words."), ("user", f"Name {q}.")))
            for q in questions
        )
    )
    wall = time.perf_counter() - started
    print(f"\n4 concurrent: {wall:.2f}s wall, TTFTs {[round(a[2], 2) for a in answers]}")
    assert all(text.strip() for text, _, _ in answers)
    lines = [r.getMessage() for r in caplog.records if r.name == "thinnest.modelsvc.llama"]
    assert _most_slots_at_once(lines) >= 2, lines  # parallel slots, not a queue


async def test_a_server_that_is_down_is_a_connection_error(settings: Settings) -> None:
    client = settings.model_copy(update={"models_url": f"http://127.0.0.1:{free_port()}"})
    model = registry.build("llm", "llama", _GREEDY, settings=client)
    once = APIConnectOptions(max_retry=0, timeout=5.0)
    try:
        with pytest.raises(APIConnectionError):  # the session retries it, then apologises
            async with model.chat(chat_ctx=_ctx(("user", "Hello?")), conn_options=once) as stream:
                async for _ in stream:
                    pass
    finally:
        await model.aclose()


def test_stop_ends_the_process_and_frees_its_port(server: LlamaServer, settings: Settings) -> None:
    other = LlamaServer(settings)
    other.start()
    process, port = other.process, other.port
    assert process is not None and other.healthy()
    other.stop()
    assert process.poll() is not None and not other.healthy()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


def test_a_hung_server_is_unhealthy_from_the_third_probe_a_dead_one_at_once(
    server: LlamaServer, settings: Settings
) -> None:
    other = LlamaServer(settings)
    other.start()
    process = other.process
    assert process is not None
    try:
        os.kill(process.pid, signal.SIGSTOP)  # alive, answering nothing
        try:
            # A busy server may miss a probe: two misses are forgiven, the third is not.
            assert [other.healthy() for _ in range(3)] == [True, True, False]
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert other.healthy()  # answering again: the count starts over
        process.kill()
        process.wait()
        assert not other.healthy()
    finally:
        other.stop()


def test_the_server_dies_with_the_process_that_started_it(
    server: LlamaServer, settings: Settings
) -> None:
    # A model service that is SIGKILLed must not leave its llama-server (and model) behind.
    script = (
        "import sys, time\n"
        "from thinnest.config import Settings\n"
        "from thinnest.modelsvc.llama_server import LlamaServer\n"
        "server = LlamaServer(Settings())\n"
        "server.start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {
        **os.environ,
        "THINNEST_DATA_DIR": str(settings.data_dir),
        "THINNEST_MODELS_DIR": str(settings.resolved_models_dir),
    }
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert Path(f"/proc/{child}").exists()
        finally:
            parent.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists()


def test_a_missing_binary_says_to_run_make_setup(settings: Settings, tmp_path: Path) -> None:
    absent = settings.model_copy(update={"llama_server_bin": tmp_path / "llama-server"})
    with pytest.raises(UnavailableError, match="make setup") as err:
        LlamaServer(absent).start()
    assert err.value.code == "llama_server_missing"


def test_a_server_that_dies_at_start_quotes_its_log(settings: Settings, tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: this build cannot run here' >&2\nexit 3\n")
    fake.chmod(0o755)
    broken = settings.model_copy(update={"llama_server_bin": fake})
    with pytest.raises(UnavailableError, match="code 3") as err:
        LlamaServer(broken).start(timeout=10)
    assert "this build cannot run here" in err.value.message
