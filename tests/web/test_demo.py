"""The demo page in a real browser holds a spoken call with the real stack."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import make_settings, start_api
from tests.engine.conftest import BROWSER_HEARD, QUESTION, Worker, heard
from tests.web.conftest import WebStack, padded_wav, save_screenshot
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

#: Above this RMS (full scale 1.0) the agent's audio is not silence (its speech measures ~0.05+).
SILENCE_RMS = 0.005


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_demo_page_holds_a_spoken_call(
    worker: Worker, web_stack: WebStack, launch_browser, speak, tmp_path: Path
) -> None:
    # Chromium plays the file from the moment the page opens the microphone: the test reopens
    # it once the greeting is over, so the question follows the greeting at a known time. The
    # lead keeps the first play from talking over the greeting (the user's words interrupt
    # it: started before its first audio, it is never said).
    wav = padded_wav(speak(QUESTION), tmp_path / "question.wav", lead=8.0, tail=60.0)
    browser = await launch_browser(wav)
    page = await browser.new_page()
    logs: list[str] = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    await page.goto(f"{web_stack.api.url}/demo")
    await expect(page.locator("#agent option")).to_have_text(["demo"])

    await page.get_by_role("button", name="Call").click()
    await expect(page.locator("#call-status")).to_have_text("connected", timeout=30_000)

    agent_lines = page.locator('#transcript li[data-role="agent"][data-final="true"]')
    await expect(agent_lines.first).to_contain_text("Hi there", timeout=120_000)
    await expect(page.locator("#agent-state")).to_have_text("listening", timeout=30_000)
    await page.evaluate("window.thinnestDemo.restartMicrophone()")
    said = ""
    for _ in range(120):  # the question's words, in one final transcript or a few
        events = await page.evaluate("window.thinnestDemo.events")
        said = " ".join(
            e["text"]
            for e in events
            if e["type"] == "transcript" and e["role"] == "user" and e["final"]
        )
        if heard(said, at_least=BROWSER_HEARD):
            break
        await page.wait_for_timeout(500)
    assert heard(said, at_least=BROWSER_HEARD), said
    user_line = page.locator('#transcript li[data-role="user"][data-final="true"]').last
    await expect(user_line).to_be_visible()
    await expect(agent_lines.nth(1)).to_be_visible(timeout=120_000)
    answer = await agent_lines.last.inner_text()
    assert answer.replace("Agent", "").strip(), "empty agent answer"

    peak = await page.evaluate("window.thinnestDemo.agentPeak")
    assert peak > SILENCE_RMS, f"agent audio is silent in the page (RMS peak {peak})"
    states = await page.evaluate(
        "window.thinnestDemo.events.filter(e => e.type === 'agent_state').map(e => e.state)"
    )
    assert {"listening", "speaking"} <= set(states), states
    await expect(page.locator("#latency tr").first).to_be_visible(timeout=30_000)
    shot = tmp_path / "demo.png"
    await page.screenshot(path=str(shot), full_page=True)
    save_screenshot(shot)

    await page.get_by_role("button", name="Hang up").click()
    ended = page.locator("#call-ended")
    await expect(ended).to_be_visible(timeout=20_000)
    await expect(ended).to_have_attribute("data-reason", "user_left")  # the visitor hung up
    await expect(ended).to_contain_text("Call ended: you hung up")  # in words, not the code
    await expect(page.locator("#call-status")).to_have_text("ended", timeout=20_000)
    await expect(page.locator("#agent-state")).to_have_text("–")  # not "listening" any more
    problem = await page.locator("#problem").inner_text()
    assert not problem, f"{problem}\n" + "\n".join(logs[-30:])
    print(f"agent RMS peak {peak:.3f}; user said {said!r}; agent answered {answer!r}")


def test_demo_routes_refuse_other_sites(web_stack: WebStack) -> None:
    with httpx.Client(base_url=web_stack.api.url, timeout=30) as http:
        assert http.get("/demo").status_code == 200
        assert http.get("/web/widget.js").status_code == 200
        assert http.get("/web/livekit-client.js").status_code == 200
        resp = http.post(
            "/demo/session",
            json={"agent_id": web_stack.agent_id},
            headers={"Origin": "https://evil.example"},
        )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in resp.headers


def test_demo_is_off_outside_dev_but_the_widget_is_served(
    livekit_server: LiveKitDevServer, database: Database, tmp_path: Path
) -> None:
    running = start_api(make_settings(tmp_path, livekit_server, web_demo=False), database)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            for method, path in [
                ("GET", "/demo"),
                ("GET", "/demo/agents"),
                ("POST", "/demo/session"),
            ]:
                resp = http.request(method, path, json={"agent_id": "x"})
                assert resp.status_code == 404, (path, resp.text)
                assert resp.json()["error"]["code"] == "demo_disabled"
            assert http.get("/web/widget.js").status_code == 200
    finally:
        running.stop()
