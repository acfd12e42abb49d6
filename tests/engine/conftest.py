"""Fixtures of the engine tests: a real voice engine worker process and spoken audio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import Tenant
from thinnest.client import VoiceClient
from thinnest.contracts.session import FINAL_STATUSES
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import sessions
from thinnest.store.db import Database

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    recordings: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(
    livekit: LiveKitDevServer,
    database_url: str,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Worker:
    """Start `thinnest worker` in its own process group and wait until it registered."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "worker.log"
    env = {
        **os.environ,
        "THINNEST_LIVEKIT_URL": livekit.options.url,
        "THINNEST_LIVEKIT_API_KEY": livekit.options.api_key,
        "THINNEST_LIVEKIT_API_SECRET": livekit.options.api_secret,
        "THINNEST_DATABASE_URL": database_url,
        "THINNEST_DATA_DIR": str(workdir),
        # The cache the setup built; built on first use if it is not there.
        "THINNEST_MODELS_DIR": str(REPO / ".thinnest" / "models"),
        "THINNEST_RECORDINGS_DIR": str(workdir / "recordings"),
        "HF_HUB_OFFLINE": "1",
        # The tests' tool servers listen on loopback, which the SSRF guard refuses by default.
        "THINNEST_TOOLS_ALLOW_PRIVATE": "true",
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    worker = Worker(proc, log, workdir / "recordings")
    deadline = time.monotonic() + 180
    # Registered with LiveKit *and* its heartbeat stored: the API counts it from then on.
    while "worker live: first heartbeat stored" not in worker.text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(worker)
            pytest.fail(f"the worker did not register:\n{worker.text()[-3000:]}")
        time.sleep(0.2)
    return worker


def stop_worker(worker: Worker) -> None:
    if worker.process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):  # job processes left behind, if any
            os.killpg(worker.process.pid, signal.SIGKILL)
        return
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(40)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture(scope="session")
def worker(
    livekit_server: LiveKitDevServer,
    database_url: str,
    database: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """One real `thinnest worker` for the engine tests (models prewarmed once)."""
    w = start_worker(livekit_server, database_url, tmp_path_factory.mktemp("worker"))
    yield w
    stop_worker(w)


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Synthesise a sentence to a WAV with espeak-ng (Debian package) and return its path."""
    folder = tmp_path_factory.mktemp("speech")

    def make(text: str, *, voice: str = "en-us", speed: int = 140) -> Path:
        path = folder / f"{abs(hash((text, voice, speed)))}.wav"
        if not path.exists():
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
                check=True,
                capture_output=True,
            )
        return path

    return make


async def wait_final(database: Database, session_id: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    """The session once it is final (polls the store)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with database.session() as db:
            row = sessions.get_session(db, session_id)
            if row.status in FINAL_STATUSES:
                return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"session {session_id} was not finalised within {within} s")


QUESTION = "How many legs does a spider have?"


#: The share of the question's words a browser's fake microphone (Chromium playing a WAV) must
#: bring through: on a loaded CI, Chromium's capture cost Whisper one word more than an rtc
#: client's ("How many legs does I spotted or found?": 4 of 7 words).
BROWSER_HEARD = 0.5


def heard(text: str, spoken: str = QUESTION, *, at_least: float = 0.6) -> bool:
    """Whether a transcript holds most of the spoken words (the STT is a small Whisper
    behind WebRTC: a word or two may come out wrong, the sentence must be recognisable)."""

    def words(s: str) -> list[str]:
        return "".join(c if c.isalnum() else " " for c in s.lower()).split()

    said, got = words(spoken), set(words(text))
    return sum(w in got for w in said) >= at_least * len(said)


class ToolServer:
    """A local HTTP tool endpoint (GET) that records each request's query (``parse_qs``'s
    lists) and answers ``answer(query)`` as JSON; ``with`` it to shut it down after.

    Args:
        path: the endpoint's path (``url`` is the whole address).
        answer: the JSON body for a request's query.
    """

    def __init__(self, path: str, answer: Callable[[dict[str, list[str]]], object]) -> None:
        self.requests: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = parse_qs(urlparse(self.path).query)
                outer.requests.append(query)
                body = json.dumps(answer(query))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> ToolServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def weather_tool(url: str, *, method: str = "GET") -> dict[str, object]:
    """The ``get_weather(city)`` HTTP tool the engine tests give their agents, calling ``url``."""
    return {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "url": url,
        "method": method,
        "timeout": 5,
    }


def scripted_weather_agent(
    tenant: Tenant, llm_url: str, tool_url: str, *, method: str = "GET", **fields: object
) -> dict[str, object]:
    """An agent with the ``get_weather`` tool calling ``tool_url``, the scripted LLM at
    ``llm_url`` (the real openai provider), and Whisper base, which hears the weather
    question more reliably than the default tiny.en."""
    return tenant.create_agent(
        providers={
            "stt": {"name": "whisper", "options": {"model": "base"}},
            "llm": {"name": "openai", "options": {"base_url": llm_url, "model": "scripted"}},
        },
        greeting="Hi, ask me about the weather.",
        tools=[weather_tool(tool_url, method=method)],
        max_duration=150,
        **fields,
    )


async def ask_the_weather(client: VoiceClient, speak: Callable[[str], Path]) -> dict[str, Any]:
    """After the agent's greeting, ask the weather in Paris; return the ``get_weather`` call
    the client is told of."""
    await client.next_event(90, type="transcript", role="agent")
    await asyncio.sleep(2)
    await client.play_wav(speak("What is the weather in Paris?"))
    return await client.next_event(120, type="tool_call", name="get_weather")
