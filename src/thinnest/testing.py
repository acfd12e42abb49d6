"""Test helpers we ship: a scripted OpenAI-compatible chat server.

``ScriptedChatServer`` speaks the OpenAI chat-completions wire protocol (streamed
server-sent events, tool-call deltas), so the ``openai`` LLM provider runs its real code
path against it. Its answers come from a rule function, after a fixed delay: tests get a
deterministic LLM that calls tools on cue, and benchmarks get an LLM of known latency.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: What a rule returns: text to say, or a tool call ``{"name": ..., "arguments": {...}}``.
Answer = str | dict[str, Any]
Rule = Callable[[list[dict[str, Any]]], Answer]


def unanswered(messages: list[dict[str, Any]]) -> str:
    """What the user said since the agent last spoke or got a tool's result, as one text.

    A real LLM reads the whole conversation. A user turn cut in two at a pause ("Thank you,
    goodbye." / "Please end the call.") gives two user messages in a row when the second
    part starts before the first is answered (livekit-agents then interrupts that answer as
    outdated): the rule must read both, as a real model would, not only the last.
    """
    said: list[str] = []
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            said.append(str(message.get("content") or ""))
        elif role == "tool" or (role == "assistant" and message.get("content")):
            break
    return " ".join(reversed(said))


def weather_rule(messages: list[dict[str, Any]]) -> Answer:
    """Weather questions call ``get_weather``; goodbyes call ``end_call``; tool results are
    read back; anything else gets a short answer. The user's words are all of their
    :func:`unanswered` messages."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"Here is what I found: {str(last.get('content', ''))[:200]}"
    text = unanswered(messages).lower()
    # "whether" and a bare city: what a small STT makes of "weather" now and then.
    if any(word in text for word in ("weather", "whether", "paris")):
        match = re.search(r"\bin\W+([a-z]+)", text)
        city = match.group(1) if match else ("paris" if "paris" in text else None)
        if city is None:
            # A question cut short (a turn ended at a pause before "in Paris"): ask, as a
            # real model would; the rest of the sentence comes as the next turn.
            return "Which city?"
        return {"name": "get_weather", "arguments": {"city": city.title()}}
    if "bye" in text:
        return {"name": "end_call", "arguments": {"goodbye": "Goodbye, have a nice day!"}}
    return "I am a scripted assistant."


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


@dataclass
class ScriptedChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on loopback, in a thread of its own.

    Attributes:
        rule: decides each answer from the request's messages.
        delay: seconds before the first token (a fixed time to first token).
        requests: every request body received, in order.
        fault: ``None`` answers normally; ``"error"`` answers HTTP 500 (a provider outage);
            ``"stall"`` holds each request open without a byte for a minute (a hung provider).
    """

    rule: Rule = weather_rule
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.fault == "error":
            return web.json_response({"error": {"message": "scripted outage"}}, status=500)
        if self.fault == "stall":
            await asyncio.sleep(60)
        answer = self.rule(body.get("messages", []))
        if self.delay:
            await asyncio.sleep(self.delay)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if isinstance(answer, str):
            for word in re.findall(r"\S+\s*", answer):
                await response.write(_chunk({"role": "assistant", "content": word}))
            await response.write(_chunk({}, "stop"))
        else:
            call = {
                "index": 0,
                "id": f"call_{len(self.requests)}",
                "type": "function",
                "function": {"name": answer["name"], "arguments": json.dumps(answer["arguments"])},
            }
            await response.write(_chunk({"role": "assistant", "tool_calls": [call]}))
            await response.write(_chunk({}, "tool_calls"))
        await response.write(b"data: [DONE]\n\n")
        return response

    def start(self) -> ScriptedChatServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._completions)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            server = site._server
            if isinstance(server, asyncio.Server) and self.port == 0:
                self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        threading.Thread(target=run, daemon=True, name="scripted-chat").start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
