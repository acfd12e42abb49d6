"""The ``cartesia`` and ``elevenlabs`` TTS against local servers speaking their WebSocket APIs.

The plugins' real streaming paths run (the ones the agent session uses): auth headers,
per-context JSON packets, base64 PCM chunks, the end-of-context message, and a refused
key as an error status.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from livekit.agents import APIConnectOptions, APIError, tts
from livekit.agents.utils import http_context

from thinnest.providers import registry

from .conftest import make_settings, serve

pytestmark = pytest.mark.integration

_TEXT = "Hello there. Your table is booked."
_OPTS = APIConnectOptions(max_retry=0, timeout=5.0)
_TONE = (np.sin(np.arange(2400) / 24000 * 2 * np.pi * 440) * 8000).astype(np.int16).tobytes()


@dataclass
class FakeTTS:
    """A fake vendor endpoint: its URL, accepted key, and the packets it received."""

    url: str = ""
    key: str = "k-test"
    packets: list[dict[str, Any]] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)


Packet = dict[str, Any]


def _websocket(
    state: FakeTTS, key_header: str, error_field: str, answer: Callable[[Packet], list[Packet]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A vendor's streaming endpoint: a wrong key in ``key_header`` gets 401 with the
    message under ``error_field``; each JSON packet is recorded and ``answer``'s replies sent."""

    async def websocket(request: web.Request) -> web.StreamResponse:
        if request.headers.get(key_header) != state.key:
            return web.json_response({error_field: "invalid api key"}, status=401)
        state.query = dict(request.query)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            packet = json.loads(msg.data)
            state.packets.append(packet)
            for reply in answer(packet):
                await ws.send_json(reply)
        return ws

    return websocket


def _cartesia_answer(packet: Packet) -> list[Packet]:
    ctx = packet["context_id"]
    replies: list[Packet] = []
    if packet["transcript"].strip():
        chunk = base64.b64encode(_TONE).decode()
        replies.append({"type": "chunk", "data": chunk, "done": False, "context_id": ctx})
    if not packet["continue"]:
        replies.append({"type": "done", "done": True, "context_id": ctx})
    return replies


def _elevenlabs_answer(packet: Packet) -> list[Packet]:
    ctx = packet.get("context_id")
    replies: list[Packet] = []
    if packet.get("text", "").strip():
        replies.append({"audio": base64.b64encode(_TONE).decode(), "context_id": ctx})
    if packet.get("close_context"):
        replies.append({"isFinal": True, "context_id": ctx})
    return replies


@pytest.fixture
async def fake_cartesia(unused_tcp_port: int) -> AsyncIterator[FakeTTS]:
    state = FakeTTS(url=f"http://127.0.0.1:{unused_tcp_port}")
    app = web.Application()
    app.router.add_get("/tts/websocket", _websocket(state, "X-API-Key", "error", _cartesia_answer))
    async with serve(app, unused_tcp_port):
        yield state


@pytest.fixture
async def fake_elevenlabs(unused_tcp_port: int) -> AsyncIterator[FakeTTS]:
    state = FakeTTS(url=f"http://127.0.0.1:{unused_tcp_port}/v1")
    app = web.Application()
    app.router.add_get(
        "/v1/text-to-speech/{voice_id}/multi-stream-input",
        _websocket(state, "xi-api-key", "detail", _elevenlabs_answer),
    )
    async with serve(app, unused_tcp_port):
        yield state


async def _speak(engine: tts.TTS, sentences: list[str]) -> bytes:
    audio = b""
    async with engine.stream(conn_options=_OPTS) as stream:
        for sentence in sentences:
            stream.push_text(sentence)
        stream.end_input()
        async with asyncio.timeout(10):
            async for event in stream:
                audio += bytes(event.frame.data)
    return audio


def _cartesia(fake: FakeTTS, tmp_path, key: str = "k-test") -> tts.TTS:
    settings = make_settings(tmp_path, cartesia_api_key=key)
    options = {"model": "sonic-3", "voice": "voice-1", "base_url": fake.url}
    return registry.build("tts", "cartesia", options, settings=settings)


def _elevenlabs(fake: FakeTTS, tmp_path, key: str = "k-test") -> tts.TTS:
    settings = make_settings(tmp_path, elevenlabs_api_key=key)
    options = {"voice_id": "v1", "base_url": fake.url, "encoding": "pcm_24000"}
    return registry.build("tts", "elevenlabs", options, settings=settings)


async def test_cartesia_streams_audio_per_sentence(fake_cartesia: FakeTTS, tmp_path) -> None:
    async with http_context.open():
        engine = _cartesia(fake_cartesia, tmp_path)
        audio = await _speak(engine, ["Hello there. ", "Your table is booked."])
        await engine.aclose()
    sent = fake_cartesia.packets
    spoken = [p for p in sent if p["transcript"].strip()]
    assert audio == _TONE * len(spoken)  # every chunk, in order, nothing else
    assert "".join(p["transcript"] for p in sent).split() == _TEXT.split()
    assert sent[0]["model_id"] == "sonic-3"
    assert sent[0]["voice"] == {"mode": "id", "id": "voice-1"}
    assert sent[0]["output_format"]["encoding"] == "pcm_s16le"
    assert sent[-1]["continue"] is False
    assert "cartesia_version" in fake_cartesia.query


async def test_cartesia_refused_key_is_an_error(fake_cartesia: FakeTTS, tmp_path) -> None:
    async with http_context.open():
        engine = _cartesia(fake_cartesia, tmp_path, key="wrong")
        with pytest.raises(APIError):
            await _speak(engine, ["Hello."])
        await engine.aclose()


async def test_elevenlabs_streams_audio_per_context(fake_elevenlabs: FakeTTS, tmp_path) -> None:
    async with http_context.open():
        engine = _elevenlabs(fake_elevenlabs, tmp_path)
        audio = await _speak(engine, ["Hello there. ", "Your table is booked."])
        await engine.aclose()
    spoken = [p for p in fake_elevenlabs.packets if p.get("text", "").strip()]
    assert audio == _TONE * len(spoken)
    assert "".join(p["text"] for p in spoken).split() == _TEXT.split()
    assert any(p.get("close_context") for p in fake_elevenlabs.packets)
    assert fake_elevenlabs.query["output_format"] == "pcm_24000"
    assert engine.sample_rate == 24000


async def test_elevenlabs_refused_key_is_an_error(fake_elevenlabs: FakeTTS, tmp_path) -> None:
    async with http_context.open():
        engine = _elevenlabs(fake_elevenlabs, tmp_path, key="wrong")
        with pytest.raises(APIError):
            await _speak(engine, ["Hello."])
        await engine.aclose()
