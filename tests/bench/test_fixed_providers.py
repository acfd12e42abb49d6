"""The ``fixed`` providers keep their promised delays and outputs through livekit's own code."""

from __future__ import annotations

import time

import numpy as np
import pytest
from livekit.agents import llm

from livekit import rtc
from thinnest.config import Settings
from thinnest.providers import registry

pytestmark = pytest.mark.unit


async def test_fixed_stt_llm_tts_answer_after_their_delays(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    stt = registry.build("stt", "fixed", {"text": "hi there", "delay_ms": 150}, settings=settings)
    started = time.monotonic()
    frame = rtc.AudioFrame(bytes(320), 16000, 1, 160)
    event = await stt.recognize([frame])
    assert time.monotonic() - started >= 0.15
    assert event.alternatives[0].text == "hi there"

    model = registry.build(
        "llm", "fixed", {"reply": "one two three", "ttft_ms": 120}, settings=settings
    )
    ctx = llm.ChatContext()
    ctx.add_message(role="user", content="hello")
    started = time.monotonic()
    pieces: list[str] = []
    first: float | None = None
    async with model.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                first = first or time.monotonic() - started
                pieces.append(chunk.delta.content)
    assert first is not None and first >= 0.12
    assert "".join(pieces) == "one two three"

    voice = registry.build("tts", "fixed", {"ttfb_ms": 80, "ms_per_char": 10}, settings=settings)
    started = time.monotonic()
    chunks = []
    first = None
    async with voice.synthesize("x" * 50) as audio:
        async for item in audio:
            first = first or time.monotonic() - started
            chunks.append(np.frombuffer(item.frame.data, dtype=np.int16))
    pcm = np.concatenate(chunks)
    assert first is not None and first >= 0.08
    assert abs(len(pcm) / voice.sample_rate - 0.5) < 0.05
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 3000  # a loud tone, not silence
    await stt.aclose()
    await model.aclose()
    await voice.aclose()
