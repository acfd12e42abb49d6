"""The ``deepgram`` STT against a local server speaking Deepgram's live WebSocket protocol.

The plugin's real code path runs: URL and query, ``Token`` auth, binary audio frames,
``SpeechStarted`` / ``Results`` (interim, final, speech_final) messages, ``CloseStream``,
and a refused upgrade as an error status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from livekit.agents import APIConnectOptions, APIStatusError, stt
from livekit.agents.utils import http_context

from livekit import rtc
from thinnest.providers import registry

from .conftest import make_settings, serve

pytestmark = pytest.mark.integration


@dataclass
class FakeDeepgram:
    """What the fake endpoint saw, and whether it accepts the key."""

    url: str = ""
    key: str = "dg-test"
    audio_bytes: int = 0
    query: dict[str, str] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


def _results(text: str, *, final: bool) -> dict[str, Any]:
    words = [
        {
            "word": w.lower(),
            "punctuated_word": w,
            "start": i * 0.3,
            "end": i * 0.3 + 0.25,
            "confidence": 0.98,
        }
        for i, w in enumerate(text.split())
    ]
    return {
        "type": "Results",
        "is_final": final,
        "speech_final": final,
        "start": 0.0,
        "duration": 1.0,
        "metadata": {"request_id": "req-1"},
        "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": words}]},
    }


@pytest.fixture
async def fake_deepgram(unused_tcp_port: int) -> AsyncIterator[FakeDeepgram]:
    state = FakeDeepgram(url=f"http://127.0.0.1:{unused_tcp_port}/v1/listen")

    async def listen(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Token {state.key}":
            return web.json_response({"err_msg": "Invalid credentials."}, status=401)
        state.query = dict(request.query)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sent_interim = sent_final = False
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                state.audio_bytes += len(msg.data)
                if not sent_interim and state.audio_bytes >= 16000:  # 0.5 s of 16 kHz audio
                    await ws.send_json({"type": "SpeechStarted", "timestamp": 0.0})
                    await ws.send_json(_results("Hello", final=False))
                    sent_interim = True
                elif not sent_final and state.audio_bytes >= 64000:  # 2 s
                    await ws.send_json(_results("Hello, book a table.", final=True))
                    sent_final = True
            elif msg.type == aiohttp.WSMsgType.TEXT:
                state.texts.append(msg.data)
                if json.loads(msg.data).get("type") == "CloseStream":
                    await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/v1/listen", listen)
    async with serve(app, unused_tcp_port):
        yield state


def _build(fake: FakeDeepgram, tmp_path, key: str = "dg-test") -> stt.STT:
    settings = make_settings(tmp_path, deepgram_api_key=key)
    options = {"model": "nova-3", "language": "en-US", "base_url": fake.url}
    return registry.build("stt", "deepgram", options, settings=settings)


def _frames(seconds: float) -> list[rtc.AudioFrame]:
    count = int(seconds * 50)
    return [rtc.AudioFrame(bytes(640), 16000, 1, 320) for _ in range(count)]


async def test_streams_interim_and_final_transcripts(fake_deepgram: FakeDeepgram, tmp_path):
    async with http_context.open():
        engine = _build(fake_deepgram, tmp_path)
        stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
        for frame in _frames(2.5):
            stream.push_frame(frame)
        events: list[stt.SpeechEvent] = []
        async for event in stream:
            if event.type != stt.SpeechEventType.RECOGNITION_USAGE:
                events.append(event)
            if event.type == stt.SpeechEventType.END_OF_SPEECH:
                break
        stream.end_input()
        await stream.aclose()
        await engine.aclose()
    assert [e.type.value for e in events] == [
        "start_of_speech",
        "interim_transcript",
        "final_transcript",
        "end_of_speech",
    ]
    assert events[1].alternatives[0].text == "Hello"
    assert events[2].alternatives[0].text == "Hello, book a table."
    assert events[2].alternatives[0].confidence == pytest.approx(0.98)
    assert fake_deepgram.query["model"] == "nova-3"
    assert fake_deepgram.query["language"] == "en-US"
    assert fake_deepgram.query["encoding"] == "linear16"
    assert fake_deepgram.audio_bytes >= 64000


async def test_refused_key_is_an_error_status(fake_deepgram: FakeDeepgram, tmp_path) -> None:
    async with http_context.open():
        engine = _build(fake_deepgram, tmp_path, key="wrong")
        stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
        for frame in _frames(0.2):
            stream.push_frame(frame)
        with pytest.raises(APIStatusError) as err:
            async with asyncio.timeout(10):
                async for _ in stream:
                    pass
        await stream.aclose()
        await engine.aclose()
    assert err.value.status_code == 401
    assert not err.value.retryable
