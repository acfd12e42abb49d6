"""`thinnest call` holds a spoken call from the terminal against the real stack."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.engine.conftest import Worker, heard, weather_tool
from tests.security.conftest import NO_WORKER_AGENT, new_owner
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

pytestmark = pytest.mark.integration


async def _thinnest(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "thinnest",
        *args,
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_call_prints_the_transcript_and_saves_the_agent_audio(
    worker: Worker, api: RunningApi, tenant: Tenant, tmp_path: Path, speak
) -> None:
    agent = tenant.create_agent(
        greeting="Hello from the terminal.",
        max_duration=90,
        # tiny.en heard this question as "How many legs done I've ever had?" in a CI run;
        # Whisper base hears it reliably (the tool test does the same).
        providers={"stt": {"name": "whisper", "options": {"model": "base"}}},
    )
    saved = tmp_path / "agent.wav"
    code, out, err = await _thinnest(
        "call",
        "--api-url",
        api.url,
        "--api-key",
        tenant.key,
        "--agent",
        agent["name"],
        "--wav",
        str(speak("How many legs does a spider have?")),
        "--out",
        str(saved),
        "--max-seconds",
        "150",
    )
    assert code == 0, err[-2000:]
    assert "agent: Hello from the terminal." in out
    user_lines = [line for line in out.splitlines() if line.strip().startswith("user:")]
    assert user_lines and heard(user_lines[0]), out
    assert "end of your speech -> first agent audio" in out
    with wave.open(str(saved)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert samples.size > 48000 and np.abs(samples).max() > 1000


async def test_call_with_a_bad_key_says_so(api: RunningApi) -> None:
    code, out, err = await _thinnest("call", "--api-url", api.url, "--api-key", "tn_sk_nope")
    assert code == 1
    assert "401" in err and "malformed API key" in err
    assert "Traceback" not in err + out


def _wav(path: Path, samples: np.ndarray, *, width: int = 2, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def _sessions(tenant: Tenant) -> int:
    return int(tenant.http.get("/voice/sessions").json()["total"])


@pytest.mark.parametrize(
    ("make", "option", "message"),
    [
        pytest.param(lambda d: d / "nope.wav", "--wav", "no such file", id="missing"),
        pytest.param(lambda d: d, "--wav", "is not a file", id="a-directory"),
        pytest.param(
            lambda d: (d / "text.wav").write_text("hello") and d / "text.wav",
            "--wav",
            "is not a PCM WAV file",
            id="not-a-wav",
        ),
        pytest.param(
            lambda d: _wav(d / "8bit.wav", np.full(8000, 128, dtype=np.uint8), width=1),
            "--wav",
            "8-bit samples: 16-bit PCM is needed",
            id="8-bit",
        ),
        pytest.param(
            lambda d: _wav(d / "empty.wav", np.zeros(0, dtype=np.int16)),
            "--wav",
            "holds no audio",
            id="empty",
        ),
        pytest.param(lambda d: d / "no" / "dir" / "a.wav", "--out", "no directory", id="out"),
    ],
)
async def test_call_refuses_a_bad_file_before_starting_a_session(
    api: RunningApi, tenant: Tenant, tmp_path: Path, make, option: str, message: str
) -> None:
    path = make(tmp_path)
    agent = tenant.create_agent()  # a call to it would start
    before = _sessions(tenant)
    code, out, err = await _thinnest(
        "call", "--api-url", api.url, "--api-key", tenant.key, "--agent", str(agent["id"]),
        option, str(path),
    )  # fmt: skip
    assert code == 1, out + err
    assert message in err and str(path) in err.replace("\n", "")
    assert "Traceback" not in err + out
    assert _sessions(tenant) == before  # nothing was started for a call that could not run


async def test_call_exits_non_zero_when_no_agent_answers(
    livekit_server: LiveKitDevServer, database: Database, tmp_path: Path
) -> None:
    """An API whose dispatches no worker takes: the session starts, nobody joins."""
    lonely = start_api(
        make_settings(tmp_path, livekit_server, agent_name=NO_WORKER_AGENT), database
    )
    owner = new_owner(lonely, database)
    try:
        agent = owner.create_agent()
        code, out, err = await _thinnest(
            "call", "--api-url", lonely.url, "--api-key", owner.key,
            "--agent", str(agent["id"]), "--max-seconds", "6",
        )  # fmt: skip
    finally:
        owner.http.close()
        lonely.stop()
    assert code == 1, out + err
    assert "no agent answered within 6 s" in out
    assert "Traceback" not in err + out


async def _run_until(
    proc: asyncio.subprocess.Process, lines: list[str], wanted: str, within: float
) -> str:
    """Read the call's stdout into ``lines`` until a line contains ``wanted``."""
    assert proc.stdout is not None
    async with asyncio.timeout(within):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"exited before {wanted!r}: {lines}")
            lines.append(line)
            if wanted in line:
                return line


@pytest.mark.timeout(400)
async def test_call_exits_as_soon_as_the_call_ends(
    worker: Worker, api: RunningApi, tenant: Tenant, tmp_path: Path
) -> None:
    """The call is ended through the API while the CLI still says its (long, silent) WAV:
    the CLI leaves then, not after the WAV and --max-seconds."""
    agent = tenant.create_agent(greeting="Hello from the terminal.", max_duration=300)
    silence = _wav(tmp_path / "silence.wav", np.zeros(16000 * 60, dtype=np.int16))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "thinnest", "call", "--api-url", api.url,
        "--api-key", tenant.key, "--agent", str(agent["id"]), "--wav", str(silence),
        "--hang-up-after", "1", "--max-seconds", "300",
        env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    try:
        session_id = (await _run_until(proc, lines, "session ", 60)).split()[-1]
        await _run_until(proc, lines, "agent: Hello from the terminal.", 240)
        await asyncio.sleep(3)  # the CLI is saying its minute of silence now
        ended = await asyncio.to_thread(tenant.http.post, f"/voice/sessions/{session_id}/end")
        assert ended.status_code == 200, ended.text
        ended_at = asyncio.get_running_loop().time()
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
        took = asyncio.get_running_loop().time() - ended_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = "".join(lines) + rest.decode()
    assert "call ended: " in out, out
    assert took < 30
    assert proc.returncode == 0, out + err.decode()


class _FailingTool:
    """A tool endpoint that answers 500."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": "the weather station is down"}')

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weather"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timeout(400)
async def test_call_prints_a_failed_tool_calls_error(
    worker: Worker, api: RunningApi, tenant: Tenant, tmp_path: Path, speak
) -> None:
    llm = ScriptedChatServer().start()  # calls get_weather on cue (see thinnest.testing)
    tool = _FailingTool()
    try:
        agent = tenant.create_agent(
            greeting="Hi, ask me about the weather.",
            max_duration=150,
            providers={
                "stt": {"name": "whisper", "options": {"model": "base"}},
                "llm": {
                    "name": "openai",
                    "options": {"base_url": llm.base_url, "model": "scripted"},
                },
            },
            tools=[weather_tool(tool.url)],
        )
        code, out, err = await _thinnest(
            "call", "--api-url", api.url, "--api-key", tenant.key, "--agent", str(agent["id"]),
            "--wav", str(speak("What is the weather in Paris?")), "--max-seconds", "150",
        )  # fmt: skip
    finally:
        tool.close()
        llm.stop()
    tool_lines = [line for line in out.splitlines() if line.strip().startswith("tool:")]
    assert tool_lines, out + err[-2000:]
    assert "get_weather(" in tool_lines[0] and " failed: " in tool_lines[0], tool_lines
    assert "500" in tool_lines[0], tool_lines
    assert code == 0, err[-2000:]
