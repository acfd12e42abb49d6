"""The API's front page and its documentation pages work offline: ``/docs`` and ``/redoc``
load every asset from the API itself, and render in a browser that can reach nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
import pytest
from playwright.async_api import Route, expect

from tests.conftest import make_settings, start_api
from tests.web.conftest import WebStack
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_assets_the_api_serves(web_stack: WebStack, page: str) -> None:
    with httpx.Client(base_url=web_stack.api.url, timeout=30) as http:
        resp = http.get(page)
        assert resp.status_code == 200
        assert "cdn" not in resp.text.lower() and "fonts.googleapis" not in resp.text
        urls = _asset_urls(resp.text)
        assert any(u.endswith(".js") for u in urls), urls
        for url in urls:
            assert urlparse(url).netloc == "" and url.startswith("/"), url
            asset = http.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        pytest.param("/docs", ".opblock-summary-path", id="swagger-ui"),
        pytest.param("/redoc", "[data-section-id]", id="redoc"),
    ],
)
async def test_docs_render_in_a_browser_that_reaches_only_the_api(
    web_stack: WebStack, launch_browser, page: str, rendered: str
) -> None:
    api_host = urlparse(web_stack.api.url).netloc
    outside: list[str] = []

    async def offline(route: Route) -> None:
        if urlparse(route.request.url).netloc == api_host:
            await route.continue_()
        else:  # what a machine without the internet would get
            outside.append(route.request.url)
            await route.abort()

    browser = await launch_browser()
    tab = await browser.new_page()
    refused: list[str] = []  # what the page's Content-Security-Policy kept it from loading
    tab.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    await tab.route("**/*", offline)
    await tab.goto(urljoin(web_stack.api.url, page))
    await expect(tab.locator(rendered).first).to_be_visible(timeout=30_000)
    await expect(tab.get_by_text("/voice/start").first).to_be_attached()
    assert outside == []
    assert all("cdn.redoc.ly" in line for line in refused), refused  # its menu's logo only


def test_the_front_page_points_to_the_demo_and_the_docs(
    web_stack: WebStack, livekit_server: LiveKitDevServer, database: Database, tmp_path: Path
) -> None:
    front = httpx.get(f"{web_stack.api.url}/", timeout=30)
    assert front.status_code == 200
    links = _asset_urls(front.text)
    assert {"/demo", "/docs", "/redoc"} <= set(links)
    for link in links:
        assert httpx.get(f"{web_stack.api.url}{link}", timeout=30).status_code == 200, link

    # Where the demo is off, the front page does not offer it.
    without_demo = start_api(make_settings(tmp_path, livekit_server, web_demo=False), database)
    try:
        links = _asset_urls(httpx.get(f"{without_demo.url}/", timeout=30).text)
        assert "/demo" not in links and "/docs" in links
    finally:
        without_demo.stop()
