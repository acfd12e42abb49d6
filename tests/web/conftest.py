"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, a fake microphone
playing a WAV, the real API serving the web assets, and a second origin for the widget.

Playwright's own browser download is not used: the browser is ``/usr/bin/chromium`` (installed
by ``scripts/setup.sh --test``). Chromium plays ``--use-file-for-fake-audio-capture`` as the
microphone from the moment a page opens it (``%noloop``: once, then silence).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Playwright, async_playwright

from tests.conftest import RunningApi, free_port, make_settings, start_api
from tests.engine.conftest import speak, worker  # noqa: F401  (fixtures used by the tests)
from thinnest.config import DEV_CREDENTIALS_FILE
from thinnest.contracts.agent import AgentConfig
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import agents, keys
from thinnest.store.db import Database

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "src" / "thinnest" / "web" / "livekit-client.js"
#: Screenshots also go to docs/images when this is set (to refresh the README's pictures).
UPDATE_SCREENSHOTS = "UPDATE_SCREENSHOTS"


def padded_wav(source: Path, out: Path, *, lead: float, tail: float) -> Path:
    """``source`` with ``lead`` seconds of silence before and ``tail`` after (same format)."""
    with wave.open(str(source), "rb") as src:
        params = src.getparams()
        frames = src.readframes(src.getnframes())
    silence = b"\0" * (params.sampwidth * params.nchannels)
    with wave.open(str(out), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(silence * int(lead * params.framerate))
        dst.writeframes(frames)
        dst.writeframes(silence * int(tail * params.framerate))
    return out


def _check_installed() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `scripts/setup.sh --test`")
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: run `scripts/setup.sh` (it builds the web bundle)")


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    _check_installed()
    async with async_playwright() as pw:
        yield pw


LaunchBrowser = Callable[..., "object"]


@pytest.fixture
async def launch_browser(playwright: Playwright) -> AsyncIterator[Callable[..., object]]:
    """``await launch_browser(wav=None, microphone=True)``: a headless Chromium whose fake
    microphone plays ``wav`` (or a tone without one); ``microphone=False`` denies it."""
    browsers: list[Browser] = []

    async def launch(wav: Path | None = None, *, microphone: bool = True) -> Browser:
        args = [
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
        ]
        if microphone:
            args.append("--use-fake-ui-for-media-stream")
        if wav is not None:
            args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=args, timeout=60_000
        )
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        await browser.close()


@dataclass
class WebStack:
    """The API with the demo on, and the dev credentials of its owner (as `thinnest dev`)."""

    api: RunningApi
    owner_id: str
    api_key: str
    agent_id: str


@pytest.fixture(scope="module")
def web_stack(
    livekit_server: LiveKitDevServer,
    database: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebStack]:
    """An API serving the demo, whose dev key (in its data dir) belongs to a fresh owner
    with one agent that greets briefly (the spoken question follows the greeting)."""
    data_dir = tmp_path_factory.mktemp("web-api")
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"web-{data_dir.name}")
        _row, plaintext = keys.create_key(db, owner, name="dev")
        config = AgentConfig(
            name="demo",
            greeting="Hi there.",
            instructions="You are a friendly assistant. Answer in one short sentence.",
            max_duration=120,
        )
        agent = agents.create_agent(db, owner.id, config)
        owner_id, agent_id = owner.id, agent.id
    (data_dir / DEV_CREDENTIALS_FILE).write_text(json.dumps({"api_key": plaintext}))
    settings = make_settings(
        data_dir, livekit_server, web_demo=True, rate_limit_per_minute=1000, sweep_interval=2.0
    )
    running = start_api(settings, database)
    yield WebStack(running, owner_id, plaintext, agent_id)
    running.stop()


@dataclass
class StaticSite:
    """A plain HTTP server on another port: another origin than the API."""

    root: Path
    url: str

    def serve(self, html: str) -> str:
        """Serve ``html`` as the site's index page; returns its URL."""
        (self.root / "index.html").write_text(html)
        return f"{self.url}/"


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[[], StaticSite]]:
    """``make_site()``: a plain HTTP server on its own port (another origin than the API)."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def make() -> StaticSite:
        root = tmp_path / f"site{len(servers)}"
        root.mkdir()
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return StaticSite(root, f"http://127.0.0.1:{server.server_address[1]}")

    yield make
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def save_screenshot(png: Path) -> None:
    """Copy a screenshot into docs/images when UPDATE_SCREENSHOTS is set."""
    if os.environ.get(UPDATE_SCREENSHOTS):
        target = REPO / "docs" / "images" / png.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
