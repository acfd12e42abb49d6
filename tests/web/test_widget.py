"""The Voice Widget on a plain page from another origin, in a real browser: the README's
snippet calls the agent from an allowed origin, and is refused elsewhere with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.engine.conftest import Worker
from tests.web.conftest import StaticSite, WebStack, save_screenshot
from thinnest.store import keys, sessions
from thinnest.store.db import Database
from thinnest.store.models import Owner

pytestmark = pytest.mark.integration

SILENCE_RMS = 0.005


def snippet(api_url: str, agent: str, key: str) -> str:
    """The README's widget snippet, on an otherwise empty page."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title></head>
<body><h1>A plain page</h1>
<script src="{api_url}/web/widget.js" async
  data-agent="{agent}" data-key="{key}"
  data-color="#5b3cc4" data-position="bottom-right"
  data-greeting="Questions? Talk to us" data-language="en"></script>
</body></html>"""


def publishable_key(database: Database, stack: WebStack, origin: str) -> str:
    with database.session() as db:
        owner = db.get(Owner, stack.owner_id)
        assert owner is not None
        _row, plaintext = keys.create_publishable_key(
            db, owner, agents_allowed=[stack.agent_id], origins=[origin], name="widget"
        )
    return plaintext


async def _open(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.get_by_role("button", name="Start a voice call")).to_be_visible()


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_widget_calls_the_agent_from_an_allowed_origin(
    worker: Worker,
    web_stack: WebStack,
    database: Database,
    make_site: Callable[[], StaticSite],
    launch_browser,
    tmp_path: Path,
) -> None:
    site = make_site()
    key = publishable_key(database, web_stack, site.url)
    url = site.serve(snippet(web_stack.api.url, "demo", key))
    browser = await launch_browser()
    page = await browser.new_page()
    await _open(page, url)
    await expect(page.get_by_text("Questions? Talk to us")).to_be_visible()

    # Keyboard only: focus the button and press Enter.
    await page.get_by_role("button", name="Start a voice call").focus()
    await page.keyboard.press("Enter")
    end = page.get_by_role("button", name="End the voice call")
    await expect(end).to_have_attribute("aria-pressed", "true", timeout=30_000)
    await expect(page.get_by_text("Hi there.")).to_be_visible(timeout=120_000)
    await page.wait_for_function(f"window.ThinnestWidget.agentPeak > {SILENCE_RMS}")
    shot = tmp_path / "widget.png"
    await page.screenshot(path=str(shot))
    save_screenshot(shot)

    await end.click()
    await expect(page.get_by_text("Call ended")).to_be_visible(timeout=10_000)
    state = await page.evaluate("[window.ThinnestWidget.state, window.ThinnestWidget.error]")
    assert state == ["ended", ""], state
    await expect(page.get_by_role("button", name="Start a voice call")).to_be_focused()


async def test_widget_is_refused_on_other_origins_and_the_key_reads_nothing(
    web_stack: WebStack,
    database: Database,
    make_site: Callable[[], StaticSite],
    launch_browser,
    tmp_path: Path,
) -> None:
    allowed, other = make_site(), make_site()
    key = publishable_key(database, web_stack, allowed.url)
    url = other.serve(snippet(web_stack.api.url, "demo", key))
    browser = await launch_browser()
    page = await browser.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    await _open(page, url)
    await page.get_by_role("button", name="Start a voice call").click()
    status = page.get_by_role("status")
    # The visitor reads a short sentence; the developer finds the server's in the console,
    # with the command that fixes it (the owner included: `keys create` requires it).
    await expect(status).to_contain_text(
        "Voice calls are not available on this website", timeout=30_000
    )
    await expect(status).not_to_contain_text("publishable key")
    assert await page.evaluate("window.ThinnestWidget.errorCode") == "origin_not_allowed"
    detail = [line for line in console if "may not use this publishable key" in line]
    assert detail, console
    assert other.url in detail[0] and "thinnest keys create --owner" in detail[0], detail
    shot = tmp_path / "widget-refused.png"
    await page.screenshot(path=str(shot))
    save_screenshot(shot)

    # From the allowed page, the key still cannot read the private API: the server says 403
    # and the browser does not even let the page read that answer.
    page2 = await browser.new_page()
    await _open(page2, allowed.serve(snippet(web_stack.api.url, "demo", key)))
    outcome = await page2.evaluate(
        """async ([api, key]) => {
          try {
            const r = await fetch(api + "/agents", {headers: {Authorization: "Bearer " + key}});
            return "read " + r.status;
          } catch (e) { return "blocked"; }
        }""",
        [web_stack.api.url, key],
    )
    assert outcome == "blocked"
    async with httpx.AsyncClient(base_url=web_stack.api.url, timeout=30) as http:
        for path in ("/agents", "/keys", "/voice/sessions"):
            resp = await http.get(
                path, headers={"Authorization": f"Bearer {key}", "Origin": allowed.url}
            )
            assert resp.status_code == 403, resp.text
            assert resp.json()["error"]["code"] == "publishable_key_not_allowed"


async def test_widget_says_when_the_microphone_is_denied(
    web_stack: WebStack,
    database: Database,
    make_site: Callable[[], StaticSite],
    launch_browser,
) -> None:
    site = make_site()
    key = publishable_key(database, web_stack, site.url)
    browser = await launch_browser(microphone=False)
    context = await browser.new_context()  # no permission granted: getUserMedia is denied
    page = await context.new_page()
    await _open(page, site.serve(snippet(web_stack.api.url, "demo", key)))
    before = _sessions(database, web_stack)
    await page.get_by_role("button", name="Start a voice call").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Microphone access was denied", timeout=30_000
    )
    # No session was started for a call that could not have been heard.
    assert _sessions(database, web_stack) == before


def _sessions(database: Database, stack: WebStack) -> int:
    with database.session() as db:
        return sessions.list_sessions(db, stack.owner_id)[1]
