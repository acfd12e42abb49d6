"""The documented browser snippet (docs/clients.md), run as written in headless Chromium with a
fake microphone against the real stack: greeting, the caller's transcript, the agent's spoken
answer and ``call_ended``. Its track has no source (``unknown``); the call React Native makes,
``setMicrophoneEnabled(true)`` (source ``microphone``), runs the same way."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.engine.conftest import BROWSER_HEARD, QUESTION, Worker, heard
from tests.engine.test_python_snippet import documented_block
from tests.web.conftest import WebStack, padded_wav

pytestmark = pytest.mark.integration

IMPORT = 'import { Room, RoomEvent } from "livekit-client";'
#: The three lines of the browser snippet that publish the microphone without a source.
PUBLISH = """\
const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
const track = stream.getAudioTracks()[0];
await room.localParticipant.publishTrack(track);
"""
#: Above this RMS (full scale 1.0) the agent's audio is not silence (its speech measures ~0.05+).
SILENCE_RMS = 0.005

#: What the page does around the snippet: records the messages the snippet hands to
#: ``showMessage``, the level of every <audio> element the snippet attaches, and errors.
HARNESS = """
window.snippet = { messages: [], errors: [], loud: [], done: false };
window.showMessage = (message) => snippet.messages.push(message);
window.addEventListener("error", (e) => snippet.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => snippet.errors.push(String(e.reason)));
const metered = new Set();
let audioCtx = null;
setInterval(() => {
  for (const el of document.querySelectorAll("audio")) {
    if (metered.has(el) || !el.srcObject) continue;
    audioCtx = audioCtx || new AudioContext();
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    audioCtx.createMediaStreamSource(el.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    metered.add(el);
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      const rms = Math.sqrt(sum / buf.length);
      if (rms > %(silence)s) snippet.loud.push([Date.now(), rms]);
    }, 50);
  }
}, 100);
""".replace("%(silence)s", str(SILENCE_RMS))


def _page(api_url: str, started: dict[str, str], code: str) -> str:
    """A page that loads livekit-client from the API and runs ``code`` (the documented block,
    its ``import`` read from the bundle's global instead) with the session's url and token."""
    assert IMPORT in code
    code = code.replace(IMPORT, "const { Room, RoomEvent } = window.LivekitClient;")
    return f"""<!doctype html>
<meta charset="utf-8"><title>snippet</title>
<script src="{api_url}/web/livekit-client.js"></script>
<script>
{HARNESS}
window.livekit_url = {json.dumps(started["livekit_url"])};
window.token = {json.dumps(started["token"])};
</script>
<script type="module">
try {{
{code}
window.room = room;
snippet.done = true;
}} catch (err) {{
  snippet.errors.push(`${{err.name}}: ${{err.message}}`);
}}
</script>
"""


async def _messages(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("snippet.messages"))


async def _arrived(
    page: Page, within: float, after: int = 0, **match: object
) -> tuple[int, dict[str, Any]]:
    """The first message the page received from index ``after`` on whose fields equal
    ``match``, waiting up to ``within`` seconds; fails early on a page error."""
    for _ in range(int(within * 4)):
        messages = await _messages(page)
        for i in range(after, len(messages)):
            if all(messages[i].get(k) == v for k, v in match.items()):
                return i, messages[i]
        errors = await page.evaluate("snippet.errors")
        assert not errors, errors
        await asyncio.sleep(0.25)
    raise AssertionError(f"no message matching {match} within {within} s: {messages}")


async def _talk(
    stack: WebStack, launch_browser: Any, speak: Any, make_site: Any, tmp: Path, code: str
) -> str:
    """Run ``code`` in a page against a fresh session and hold a spoken exchange; returns the
    source of the microphone's publication as the page saw it."""
    with stack.api.client(stack.api_key) as http:
        # The real STT hears the question; a fixed LLM answers at once (that the caller is
        # heard and answered aloud matters here, not what is said).
        resp = http.post(
            "/agents",
            json={
                "name": f"snippet-{tmp.name}"[:60],
                "greeting": "Hi there.",
                "providers": {
                    "llm": {"name": "fixed", "options": {"reply": "A spider has eight legs."}}
                },
                "max_duration": 120,
            },
        )
        assert resp.status_code == 201, resp.text
        resp = http.post("/voice/start", json={"agent_id": resp.json()["id"]})
        assert resp.status_code == 200, resp.text
        started = resp.json()

    # Chromium plays the file from the moment the page opens the microphone; the test reopens
    # it once the greeting is over (as the demo test does), so the question follows the
    # greeting. The lead keeps the first play from talking over the greeting.
    wav = padded_wav(speak(QUESTION), tmp / "question.wav", lead=8.0, tail=60.0)
    browser = await launch_browser(wav)
    page = await browser.new_page()
    logs: list[str] = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    await page.goto(make_site().serve(_page(stack.api.url, started, code)))
    try:
        for _ in range(240):
            if await page.evaluate("snippet.done || snippet.errors.length > 0"):
                break
            await asyncio.sleep(0.25)
        errors = await page.evaluate("snippet.errors")
        assert not errors and await page.evaluate("snippet.done"), errors
        source = await page.evaluate(
            "[...room.localParticipant.audioTrackPublications.values()][0].source"
        )

        speaking, _ = await _arrived(page, 180, type="agent_state", state="speaking")
        _, greeting = await _arrived(page, 30, type="transcript", role="agent")
        assert "Hi there" in greeting["text"]
        listening, _ = await _arrived(
            page, 60, after=speaking, type="agent_state", state="listening"
        )
        assert await page.evaluate("snippet.loud.length") > 0, "no greeting audio in the page"

        await page.evaluate(
            "[...room.localParticipant.audioTrackPublications.values()][0].track.restartTrack()"
        )
        asked_at = await page.evaluate("Date.now()")
        said = ""
        for _ in range(3):  # the question's words, in one final transcript or a few
            at, user = await _arrived(
                page, 90, after=listening, type="transcript", role="user", final=True
            )
            said, listening = f"{said} {user['text']}", at + 1
            if heard(said, at_least=BROWSER_HEARD):
                break
        assert heard(said, at_least=BROWSER_HEARD), said
        _, answer = await _arrived(page, 90, after=listening, type="transcript", role="agent")
        assert "eight" in answer["text"]
        for _ in range(40):  # the answer's audio follows its transcript
            if await page.evaluate(f"snippet.loud.some(([t]) => t > {asked_at})"):
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("no agent audio in the page after the question")

        async with httpx.AsyncClient(base_url=stack.api.url, timeout=30) as http:
            sid = started["session_id"]
            resp = await http.post(
                f"/voice/sessions/{sid}/end", headers={"Authorization": f"Bearer {stack.api_key}"}
            )
        assert resp.status_code == 200, resp.text
        _, ended = await _arrived(page, 30, type="call_ended")
        assert ended["reason"] == "ended_by_api" and ended["duration"] > 0
        return str(source)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(logs[-30:])) from None


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_the_browser_snippet_talks_as_documented(
    worker: Worker, web_stack: WebStack, launch_browser, speak, make_site, tmp_path: Path
) -> None:
    code = documented_block("Browser", "js")
    assert PUBLISH in code  # the documented form: a MediaStreamTrack, no publish options
    source = await _talk(web_stack, launch_browser, speak, make_site, tmp_path, code)
    assert source == "unknown"  # the case under test: a track published without a source


@pytest.mark.timeout(600)
async def test_set_microphone_enabled_talks(
    worker: Worker, web_stack: WebStack, launch_browser, speak, make_site, tmp_path: Path
) -> None:
    # React Native's call, in the same livekit-client: the source is the microphone.
    code = documented_block("Browser", "js").replace(
        PUBLISH, "await room.localParticipant.setMicrophoneEnabled(true);\n"
    )
    assert "setMicrophoneEnabled(true)" in documented_block("React Native", "js")
    source = await _talk(web_stack, launch_browser, speak, make_site, tmp_path, code)
    assert source == "microphone"
