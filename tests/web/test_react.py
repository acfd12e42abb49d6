"""examples/react (LiveKitRoom + useVoiceAssistant, unchanged) built with Vite and run in a real
browser against the real stack: the agent's state and its greeting arrive through LiveKit's
standard attributes and transcription streams, our events through the data channel."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import free_port
from tests.engine.conftest import Worker
from tests.web.conftest import REPO, WebStack, padded_wav, save_screenshot

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "react"


async def _run(*args: str, limit: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=EXAMPLE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


@pytest.fixture
async def react_app(web_stack: WebStack) -> AsyncIterator[str]:
    """The example built (`npm ci` first where setup has not) and served by `vite preview`,
    its /demo proxy pointed at the test's API."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: run `scripts/setup.sh --test`")
    if not (EXAMPLE / "node_modules").is_dir():
        await _run(npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", limit=600)
    await _run(npm, "run", "build", limit=600)
    port = free_port()
    env = {**os.environ, "THINNEST_API_URL": web_stack.api.url}
    proc = await asyncio.create_subprocess_exec(
        npm,
        "run",
        "preview",
        "--",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--strictPort",
        cwd=EXAMPLE,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(url)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                pytest.fail("vite preview did not start")
        yield url
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, 15)
            await asyncio.wait_for(proc.wait(), 20)


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_react_example_talks_with_use_voice_assistant(
    worker: Worker, react_app: str, launch_browser, speak, tmp_path: Path
) -> None:
    # A silent microphone: the example only has to connect, hear the greeting and show it.
    silence = padded_wav(speak("."), tmp_path / "silence.wav", lead=0.0, tail=30.0)
    browser = await launch_browser(silence)
    page = await browser.new_page()
    await page.goto(f"{react_app}/?agent=demo")
    await page.get_by_role("button", name="Talk to demo").click()
    greeting = page.get_by_test_id("agent-transcriptions").get_by_text("Hi there")
    await expect(greeting).to_be_visible(timeout=120_000)
    await expect(page.get_by_test_id("events").locator('li[data-role="agent"]')).to_contain_text(
        "Hi there"
    )
    await expect(page.get_by_test_id("state")).to_have_text("listening", timeout=60_000)
    shot = tmp_path / "react.png"
    await page.screenshot(path=str(shot), full_page=True)
    save_screenshot(shot)
