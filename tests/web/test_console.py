"""The operator console in a real browser, against a real recorded call on the real stack.

One spoken call (real worker, real LiveKit, recording on) is made while the browser is signed
in: the calls list marks it live and refreshes itself when it ends; then the call's page plays
its recording and highlights the line being heard, an agent edit shows the API's error on its
field, and a key is created (shown once) and revoked.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.engine.conftest import ToolServer, Worker, ask_the_weather, wait_final, weather_tool
from tests.web.conftest import WebStack, save_screenshot
from thinnest.client import VoiceClient
from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.store import agents, sessions
from thinnest.store.db import Database
from thinnest.store.models import utcnow
from thinnest.testing import Answer, ScriptedChatServer, weather_rule

pytestmark = pytest.mark.integration

#: A word only this call's greeting says: the transcript search finds the call by it.
MARKER = "marmalade"
VIEWPORT = {"width": 1280, "height": 900}


def _forecast(query: dict[str, list[str]]) -> dict[str, object]:
    return {"city": (query.get("city") or ["?"])[0], "forecast": "sunny", "temperature_c": 21}


def _weather_in_words(messages: list[dict[str, Any]]) -> Answer:
    """The scripted LLM's weather rule, reading the tool's answer back in a sentence."""
    if messages and messages[-1].get("role") == "tool":
        return "It is sunny in Paris, 21 degrees."
    return weather_rule(messages)


async def _shot(page: Page, tmp_path: Path, name: str) -> None:
    await page.locator("#toast").evaluate("e => { e.hidden = true; }")  # a passing notice
    png = tmp_path / f"console-{name}.png"
    await page.screenshot(path=str(png), full_page=True)
    save_screenshot(png)


async def _sign_in(page: Page, stack: WebStack) -> None:
    await page.goto(f"{stack.api.url}/console")
    await page.fill("#api-key", stack.api_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#owner-name")).not_to_be_empty()


async def _recording_path(database: Database, session_id: str) -> str:
    for _ in range(150):  # the recording is moved into place as the job shuts down
        with database.session() as db:
            path = sessions.get_session(db, session_id).recording_path
        if path:
            return path
        await asyncio.sleep(0.2)
    raise AssertionError("no recording stored")


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_console_shows_a_recorded_call_and_manages_agents_and_keys(
    worker: Worker,
    web_stack: WebStack,
    database: Database,
    launch_browser,
    speak,
    tmp_path: Path,
) -> None:
    # A tool call in the call: the scripted LLM (the real openai provider) calls get_weather
    # on cue, which the 0.5B offline model rarely decides to do.
    llm = ScriptedChatServer(rule=_weather_in_words).start()
    try:
        with (
            ToolServer("/weather", _forecast) as weather,
            web_stack.api.client(web_stack.api_key) as http,
        ):
            agent = await asyncio.to_thread(
                http.post,
                "/agents",
                json={
                    "name": "Console demo",
                    "greeting": f"Hello, this is the {MARKER} line. Ask me about the weather.",
                    "instructions": "You are a weather assistant. Call get_weather for a city.",
                    "recording": True,
                    "max_duration": 120,
                    "providers": {
                        "stt": {"name": "whisper", "options": {"model": "base"}},
                        "llm": {
                            "name": "openai",
                            "options": {"base_url": llm.base_url, "model": "scripted"},
                        },
                    },
                    "tools": [weather_tool(weather.url)],
                },
            )
            assert agent.status_code == 201, agent.text
            await _console_session(
                http, agent.json()["id"], web_stack, database, launch_browser, speak, tmp_path
            )
    finally:
        llm.stop()


async def _console_session(  # type: ignore[no-untyped-def]
    http: httpx.Client,
    agent_id: str,
    web_stack: WebStack,
    database: Database,
    launch_browser,
    speak,
    tmp_path: Path,
) -> None:
    """The browser's part, with the agent ``agent_id`` (recording on, the weather tool)."""
    browser = await launch_browser(microphone=False)
    page = await browser.new_page(viewport=VIEWPORT)
    logs: list[str] = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))

    # Signing in: the key goes once to the API; the page keeps neither it nor a readable cookie.
    await _sign_in(page, web_stack)
    assert await page.input_value("#api-key") == ""
    kept = await page.evaluate(
        "[JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie]"
    )
    assert kept == ["{}", "{}", ""], kept
    await page.reload()  # the HttpOnly cookie signs the page in again
    await expect(page.locator("#owner-name")).not_to_be_empty()
    await expect(page.locator("#signin")).to_be_hidden()

    started = await asyncio.to_thread(
        http.post, "/voice/start", json={"agent_id": agent_id, "recording": True}
    )
    assert started.status_code == 200, started.text
    sid = started.json()["session_id"]
    async with VoiceClient(started.json()["livekit_url"], started.json()["token"]) as client:
        tool_call = await ask_the_weather(client, speak)
        assert tool_call["arguments"]["city"] == "Paris", tool_call
        await client.next_event(90, type="transcript", role="agent")

        # The call is live: the list marks it and refreshes on its own when it ends.
        await page.click('nav a[data-nav="calls"]')
        row = page.locator(f'#calls tr[data-session="{sid}"]')
        await expect(row).to_have_attribute("data-status", "active")
        await expect(row.locator(".badge.live")).to_be_visible()
        resp = await asyncio.to_thread(http.post, f"/voice/sessions/{sid}/end")
        assert resp.status_code == 200, resp.text
        await client.next_event(20, type="call_ended")
    await expect(row).to_have_attribute("data-status", "ended", timeout=15_000)
    await wait_final(database, sid)
    await _recording_path(database, sid)

    # The transcript search finds the call by its greeting, and only it.
    await page.fill("#f-q", MARKER)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#calls tr[data-session]")).to_have_count(1)
    await expect(row).to_contain_text("ended through the API")
    await _shot(page, tmp_path, "calls")
    await page.fill("#f-q", "zebra-nonexistent")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#calls tr[data-session]")).to_have_count(0)
    await page.fill("#f-q", MARKER)
    await page.get_by_role("button", name="Filter").click()

    # The call: its transcript, the recording, the line heard highlighted; a click seeks.
    await row.click()
    lines = page.locator("#transcript li")
    await expect(lines.first).to_contain_text(MARKER)
    await expect(page.locator('#transcript li[data-role="user"]').first).to_be_visible()
    await expect(page.locator("#end-reason")).to_contain_text("ended_by_api")
    tool = page.locator('#tool-calls [data-tool="get_weather"]')
    await expect(tool).to_contain_text('"city": "Paris"')
    await expect(tool).to_contain_text("sunny")
    assert await lines.count() >= 3, await page.locator("#transcript").inner_text()
    audio = page.locator("#recording")
    await expect(audio).to_be_visible()
    offsets = await lines.evaluate_all("els => els.map(e => e.dataset.offset)")
    assert all(o not in ("", None) for o in offsets), f"turns without an offset: {offsets}"
    await page.evaluate("document.getElementById('recording').play()")
    t0 = await audio.evaluate("a => a.currentTime")
    # Polled from here: the page's CSP (no eval) refuses wait_for_function's string.
    t = t0
    for _ in range(75):
        t = await audio.evaluate("a => a.currentTime")
        if t > t0 + 0.5:
            break
        await asyncio.sleep(0.2)
    assert t > t0 + 0.5, f"the recording does not play: currentTime {t0} -> {t}"
    await expect(page.locator("#transcript li.playing")).to_have_count(1)
    user_line = page.locator('#transcript li[data-role="user"]').first
    await user_line.click()
    await expect(user_line).to_have_class(re.compile(r"\bplaying\b"))
    heard_at = await audio.evaluate("a => a.currentTime")
    assert abs(heard_at - float(await user_line.get_attribute("data-offset") or 0)) < 1.5
    await page.evaluate("document.getElementById('recording').pause()")
    await _shot(page, tmp_path, "call")

    # An agent: the API's validation error shows on the field at fault, then a fix saves.
    await page.click('nav a[data-nav="agents"]')
    await page.get_by_role("link", name="Console demo").click()
    await expect(page.locator("#a-name")).to_have_value("Console demo")
    await page.fill(
        "#a-tools", '[{"name": "lookup", "description": "Look up", "url": "not a url"}]'
    )
    await page.get_by_role("button", name="Save").click()
    error = page.locator("#a-tools-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("tools.0.url")
    await expect(page.locator("#a-tools")).to_have_attribute("aria-invalid", "true")
    await _shot(page, tmp_path, "agent")
    await page.fill("#a-tools", "[]")
    await page.fill("#a-greeting", f"Hi, the {MARKER} line here.")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#agent-saved")).to_be_visible()
    await expect(error).to_be_hidden()
    saved = (await asyncio.to_thread(http.get, f"/agents/{agent_id}")).json()
    assert saved["greeting"] == f"Hi, the {MARKER} line here.", saved
    assert saved["recording"] is True and saved["max_duration"] == 120, saved
    test_call = page.get_by_role("link", name="Test call")
    assert await test_call.get_attribute("href") == f"/demo?agent={agent_id}"

    # A publishable key: its agents, origins and rate limit are listed.
    await page.click('nav a[data-nav="keys"]')
    await page.fill("#k-name", "website widget")
    await page.select_option("#k-kind", "publishable")
    await page.select_option("#k-agents", agent_id)
    await page.fill("#k-origins", "https://shop.example.com")
    await page.fill("#k-rate", "30")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-key")).to_contain_text("tn_pk_")
    widget_row = page.locator("#keys tr", has_text="website widget")
    for chip in ["agent: Console demo", "https://shop.example.com", "30 / min"]:
        await expect(widget_row.locator(".chip", has_text=chip)).to_be_visible()
    await page.get_by_role("button", name="Done").click()

    # A secret key: shown once, usable, then revoked after a confirmation.
    await page.fill("#k-name", "console test key")
    await page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key")
    await expect(shown).to_be_visible()
    new_key = (await shown.inner_text()).strip()
    with web_stack.api.client(new_key) as other:
        assert (await asyncio.to_thread(other.get, "/agents")).status_code == 200
    await _shot(page, tmp_path, "keys")
    key_row = page.locator("#keys tr", has_text="console test key")
    await key_row.get_by_role("button", name="Revoke").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await page.click("#confirm-ok")
    await expect(key_row.locator(".badge.revoked")).to_be_visible()
    with web_stack.api.client(new_key) as other:
        assert (await asyncio.to_thread(other.get, "/agents")).status_code == 401
    await page.reload()
    await expect(page.locator("#keys")).to_be_visible()
    await expect(page.locator("#new-key")).to_have_count(0)  # never shown again

    # Webhooks: an endpoint and its delivery log.
    await page.click('nav a[data-nav="webhooks"]')
    # A loopback port nobody listens on (the tests reach no network): the attempt fails.
    await page.fill("#w-url", "http://127.0.0.1:9/hooks/thinnest")
    await page.fill("#w-desc", "CRM sync")
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page.locator("#deliveries")).to_be_visible()
    await expect(page.locator("#webhook-secret")).to_contain_text("whsec_")  # shown once
    await page.get_by_role("button", name="Send test event").click()
    await expect(page.locator("#deliveries tr[data-delivery]")).to_have_count(1)
    await _shot(page, tmp_path, "webhooks")
    first_secret = await page.locator("#webhook-secret").inner_text()
    await page.get_by_role("button", name="Rotate secret").click()
    await page.click("#confirm-ok")
    await expect(page.locator("#webhook-secret")).not_to_have_text(first_secret)
    await expect(page.locator("#webhook-secret")).to_contain_text("whsec_")

    # The overview counts the call and the agent's latency.
    await page.click('nav a[data-nav="overview"]')
    await expect(page.locator("#overview-stats")).to_be_visible()
    await expect(page.locator(f'tr[data-agent="{agent_id}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-agent="{agent_id}"] td').nth(1)).to_have_text("1")
    await _shot(page, tmp_path, "overview")

    # Signing out ends the server's session: a reload asks for the key again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin")).to_be_visible()
    await page.reload()
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#topbar")).to_be_hidden()
    errors = [line for line in logs if line.startswith(("error", "pageerror"))]
    # Expected: the 401 of GET /console/session on a signed-out page, the agent's 422.
    expected = ("status of 401", "status of 422")
    assert all(any(e in line for e in expected) for line in errors), "\n".join(logs[-30:])


async def test_console_refuses_a_bad_key_and_a_publishable_key(
    web_stack: WebStack, launch_browser, tmp_path: Path
) -> None:
    with web_stack.api.client(web_stack.api_key) as http:
        made = await asyncio.to_thread(
            http.post,
            "/keys",
            json={
                "kind": "publishable",
                "name": "site",
                "agents": [web_stack.agent_id],
                "origins": ["https://example.com"],
            },
        )
    assert made.status_code == 201, made.text
    browser = await launch_browser(microphone=False)
    page = await browser.new_page(viewport=VIEWPORT)
    await page.goto(f"{web_stack.api.url}/console")
    await expect(page.locator("#signin")).to_be_visible()
    await _shot(page, tmp_path, "signin")
    for key, words in [("tn_sk_not-a-real-key", "key"), (made.json()["key"], "secret")]:
        await page.fill("#api-key", key)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-error")).to_be_visible()
        await expect(page.locator("#signin-error")).to_contain_text(words)
        await expect(page.locator("#topbar")).to_be_hidden()
    # Without the sign-in's CSRF token, the cookie alone changes nothing.
    await page.fill("#api-key", web_stack.api_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#owner-name")).not_to_be_empty()
    status = await page.evaluate(
        """fetch('/keys', {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/json'}, body: '{"name": "x"}'})
           .then(r => r.status)"""
    )
    assert status == 403
    signed_out = await asyncio.to_thread(httpx.get, f"{web_stack.api.url}/console/session")
    assert signed_out.status_code == 401  # the browser's cookie is not anyone else's


def _seed_failed_calls(database: Database, stack: WebStack, count: int) -> str:
    """``count`` calls that ended in an error, stored as the engine stores them; the last
    one has an agent turn the caller cut short and a tool call that failed. Returns its id."""
    with database.session() as db:
        agent = agents.get_agent(db, stack.owner_id, stack.agent_id)
        for _ in range(count):
            row = sessions.create_session(
                db,
                owner_id=stack.owner_id,
                agent_id=agent.id,
                agent_config=agent.config,
                max_duration=120,
                status="active",
                started_at=utcnow(),
            )
            sessions.finalize(
                db, row, status=SessionStatus.ERROR, reason=EndReason.ERROR, error="llm timed out"
            )
        t0 = row.started_at
        assert t0 is not None
        at = [t0 + timedelta(seconds=s) for s in range(8)]
        sessions.add_turn(
            db, row.id, role="assistant", text="Hi there.", started_at=at[0], ended_at=at[1]
        )
        sessions.add_turn(
            db,
            row.id,
            role="user",
            text="<img src=x>Book a table",
            started_at=at[2],
            ended_at=at[3],
        )
        sessions.add_turn(
            db,
            row.id,
            role="assistant",
            text="Sure, for how many people would you",
            interrupted=True,
            started_at=at[4],
            ended_at=at[5],
            latency={
                "end_of_turn_delay": 0.4,
                "llm_ttft": 0.3,
                "tts_ttfb": 0.1,
                "voice_to_voice": 0.9,
            },
        )
        sessions.add_turn(db, row.id, role="user", text="Four.", started_at=at[5], ended_at=at[6])
        sessions.add_tool_call(
            db, row.id, name="book_table", arguments={"people": 4}, error="HTTP 503", duration=0.2
        )
        db.commit()
        return row.id


async def test_console_shows_failures_interruptions_and_pages(
    web_stack: WebStack, database: Database, launch_browser
) -> None:
    last = await asyncio.to_thread(_seed_failed_calls, database, web_stack, 21)
    browser = await launch_browser(microphone=False)
    page = await browser.new_page(viewport=VIEWPORT)
    await _sign_in(page, web_stack)
    await page.click('nav a[data-nav="calls"]')
    await page.select_option("#f-end_reason", "error")  # a select filters at once
    rows = page.locator("#calls tr[data-session]")
    await expect(rows).to_have_count(20)
    await expect(page.locator(".pager")).to_contain_text("1–20 of 21")
    await expect(rows.first).to_have_attribute("data-session", last)  # newest first
    await page.get_by_role("button", name="Older →").click()
    await expect(rows).to_have_count(1)
    await expect(page.locator(".pager")).to_contain_text("21–21 of 21")

    await page.goto(f"{web_stack.api.url}/console#/calls/{last}")
    await expect(page.locator("#call-error")).to_contain_text("llm timed out")
    cut = page.locator('#transcript li[data-seq="3"]')
    await expect(cut.locator(".badge.interrupted")).to_have_text("interrupted by the caller")
    await expect(cut).to_contain_text("voice to voice 900 ms")
    # Text from a call is text, never markup.
    await expect(page.locator('#transcript li[data-seq="2"]')).to_contain_text("<img src=x>")
    await expect(page.locator("#transcript img")).to_have_count(0)
    tool = page.locator('#tool-calls [data-tool="book_table"]')
    await expect(tool.locator(".badge")).to_have_text("failed")
    await expect(tool).to_contain_text("error: HTTP 503")
    await expect(page.locator("#recording")).to_have_count(0)  # not recorded: no player


async def test_test_call_opens_the_demo_on_that_agent(web_stack: WebStack, launch_browser) -> None:
    with web_stack.api.client(web_stack.api_key) as http:
        # The picker lists agents by name: this one comes after the stack's "demo".
        made = await asyncio.to_thread(http.post, "/agents", json={"name": "zeta agent"})
    assert made.status_code == 201, made.text
    second = made.json()["id"]
    browser = await launch_browser(microphone=False)
    page = await browser.new_page(viewport=VIEWPORT)
    await _sign_in(page, web_stack)
    await page.click('nav a[data-nav="agents"]')
    link = page.locator(f'#agents tr[data-agent="{second}"]').get_by_role("link", name="Test call")
    await page.goto(f"{web_stack.api.url}{await link.get_attribute('href')}")
    await expect(page.locator("#agent option")).not_to_have_count(0)
    assert await page.locator("#agent option").count() >= 2
    await expect(page.locator("#agent")).to_have_value(second)  # the last in the list
