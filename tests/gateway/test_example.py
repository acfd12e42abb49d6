"""The README's WebSocket example holds a spoken conversation while another session's client
stops reading for a while (its audio is dropped oldest-first, its events kept; the other
session does not notice)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
import wave
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import RunningApi, Tenant
from tests.engine.conftest import QUESTION, Worker, heard, wait_final
from tests.gateway.wsclient import create_agent
from thinnest.store.db import Database

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
#: Seconds the slow client reads nothing (under uvicorn's keepalive: 20 s ping + 20 s timeout).
UNREAD = 25


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## WebSocket protocol") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no Python example in the README's WebSocket section"
    return match.group(1)


async def _run_example(tmp: Path, api: RunningApi, key: str, agent_id: str, wav: Path):  # type: ignore[no-untyped-def]
    script = tmp / "example.py"
    script.write_text(readme_example())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(wav),
        cwd=tmp,
        env={**os.environ, "API_URL": api.url, "API_KEY": key, "AGENT_ID": agent_id},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode(), err.decode()


def _small_buffer_socket(url: str) -> socket.socket:
    """A connected socket with a tiny receive buffer: a reader's backlog shows up fast."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    sock.setblocking(False)
    return sock


# Generous: the first test of a run also waits for the worker to start (minutes under load).
@pytest.mark.timeout(900)
async def test_readme_example_talks_while_another_client_stops_reading(
    worker: Worker,
    api: RunningApi,
    tenant: Tenant,
    database: Database,
    speak,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="thinnest.gateway")
    # The default agent's config, but Whisper base: tiny.en heard this question as "How many
    # legs done I have?" in a CI run (the gateway, not the STT, is under test here).
    base = {"stt": {"name": "whisper", "options": {"model": "base"}}}
    agent = create_agent(tenant, providers=base)
    talker = create_agent(
        tenant,
        greeting="Hello, this is Thinnest. " + "I am going to talk for quite a while now. " * 4,
        max_duration=600,
    )
    resp = await asyncio.to_thread(
        tenant.http.post, "/voice/start", json={"agent_id": talker["id"]}, timeout=120
    )
    assert resp.status_code == 200, resp.text
    slow = resp.json()
    rate = 48000  # the most bytes per second: the backlog builds up fastest
    url = f"{slow['websocket_url']}?token={slow['token']}&sample_rate={rate}"
    async with connect(
        url, sock=_small_buffer_socket(url), max_queue=1, ping_interval=None, open_timeout=20
    ) as ws:

        async def microphone() -> None:  # silence in real time, never a read
            frame, start, sent = bytes(rate // 50 * 2), time.monotonic(), 0
            try:
                while True:
                    await ws.send(frame)
                    sent += 1
                    await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))
            except ConnectionClosed:
                pass

        audio: list[tuple[float, int]] = []
        events: list[dict[str, object]] = []

        async def late_reader() -> None:  # reads nothing for UNREAD seconds, then everything
            await asyncio.sleep(UNREAD)
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    if isinstance(message, bytes):
                        audio.append((time.monotonic(), len(message)))
                    else:
                        events.append(json.loads(message))

        mic = asyncio.create_task(microphone())
        reader = asyncio.create_task(late_reader())
        t0 = time.monotonic()
        code, out, err = await _run_example(
            tmp_path, api, tenant.key, str(agent["id"]), speak(QUESTION)
        )
        assert time.monotonic() - t0 > UNREAD
        closed_early = (ws.close_code, ws.close_reason)
        # It hangs up: the gateway must read `end` behind the audio it is still sending.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait({reader}, timeout=30)  # its reading ends when the gateway closes
        hung_up = (ws.close_code, ws.close_reason)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        mic.cancel()
        await asyncio.gather(mic, return_exceptions=True)
    # The gateway leaves the room when the client hangs up: the call ends user_left.

    # The README example: greeting, the question heard, a spoken answer, call_ended.
    assert code == 0, err[-3000:]
    printed = [ast.literal_eval(line) for line in out.splitlines() if line.startswith("{")]
    transcripts = [e for e in printed if e["type"] == "transcript" and e.get("final")]
    roles = [e["role"] for e in transcripts]
    assert roles[:1] == ["agent"] and "user" in roles, out
    # The STT may cut the question in two at a pause: all the user's words together.
    said = " ".join(e["text"] for e in transcripts if e["role"] == "user")
    assert heard(said), out
    assert roles[roles.index("user") + 1 :].count("agent") >= 1, out
    assert printed[-1]["type"] == "call_ended" and printed[-1]["reason"] == "max_duration", out
    with wave.open(str(tmp_path / "agent.wav")) as saved:
        samples = np.frombuffer(saved.readframes(saved.getnframes()), dtype=np.int16)
        seconds = saved.getnframes() / saved.getframerate()
    assert seconds > 3 and np.abs(samples).max() > 3000, "the agent's voice was not saved"

    # The client that stopped reading: its audio was cut to the newest, every event kept.
    backlog_s = sum(n for at, n in audio if at < t0 + UNREAD + 1) / 2 / rate
    dropped = [
        r.getMessage() for r in caplog.records if "dropping its oldest audio" in r.getMessage()
    ]
    print(
        f"client that read nothing for {UNREAD} s: its first second of reading brought "
        f"{backlog_s:.2f} s of audio; {len(events)} events in all; {dropped}"
    )
    assert closed_early == (None, None), (
        f"the gateway closed a client that was only slow: {closed_early}"
    )
    assert hung_up == (1000, "hung up"), hung_up
    row = await wait_final(database, slow["session_id"], within=60)
    assert row.end_reason == "user_left", row.end_reason
    assert dropped, "the gateway never dropped audio for the slow reader"
    assert events and events[0]["type"] == "ready"
    assert any(e["type"] == "transcript" and e["role"] == "agent" for e in events), events
