"""A model service that hangs: each request to it is bounded by ``provider_timeout``, and the
call goes on (the agent apologises, or the client is told of the failed turn).

Real stack: LiveKit server, an API and a worker of their own (``THINNEST_PROVIDER_TIMEOUT``
short), the real ``thinnest models`` behind a loopback proxy that passes every request through
but, once told to, holds those of one endpoint open: without a byte (a service that accepts
and never answers), or after its answer's headers (a service that stalls mid-answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.engine.conftest import Worker, start_worker, stop_worker
from tests.modelsvc.conftest import QUESTION, ModelService, assistant, greeted, until
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

AGENT_NAME = "thinnest-hung-service-test"
TIMEOUT = 4.0  # THINNEST_PROVIDER_TIMEOUT of the worker
RETRIES = 1  # THINNEST_PROVIDER_RETRIES: each failed turn is 1 + RETRIES requests
SORRY = "Sorry, something went wrong on my side. Could you say that again?"

#: Headers of an answer that describe the hop, not the content.
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Held:
    """A request the proxy held open: when it came, and when its client gave up on it."""

    path: str
    arrived: float
    dropped: float | None = None


@dataclass
class HangingProxy:
    """A loopback proxy in front of the model service, in a thread of its own.

    Attributes:
        upstream: the model service's URL.
        hang: the path whose requests are held open (None: every request passes through).
        mode: ``"silent"`` holds them without answering, ``"stalled"`` after the headers.
        held: every request held, in order.
    """

    upstream: str
    hang: str | None = None
    mode: str = "silent"
    held: list[Held] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _session: aiohttp.ClientSession | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _hold(self, request: web.Request) -> web.StreamResponse:
        held = Held(request.path, time.monotonic())
        self.held.append(held)
        try:
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            if self.mode == "stalled":
                await response.prepare(request)
            await asyncio.Event().wait()  # until the client closes the connection
            return response  # never: a closed connection cancels the handler
        finally:
            held.dropped = time.monotonic()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == self.hang:
            return await self._hold(request)
        assert self._session is not None
        skip = _HOP_HEADERS | {"host"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                },
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def start(self) -> HangingProxy:
        ready = threading.Event()

        async def serve() -> web.AppRunner:
            app = web.Application()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
            return runner

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            runner = loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()
            if self._session is not None:
                loop.run_until_complete(self._session.close())
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="hanging-proxy")
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(15)


@dataclass
class HungStack:
    proxy: HangingProxy
    worker: Worker
    api: RunningApi


@pytest.fixture(scope="module")
def hung_stack(
    livekit_server: LiveKitDevServer,
    database_url: str,
    database: Database,
    models_service: ModelService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HungStack]:
    """A worker and an API whose model service is the real one behind a :class:`HangingProxy`."""
    proxy = HangingProxy(models_service.url).start()
    worker = start_worker(
        livekit_server,
        database_url,
        tmp_path_factory.mktemp("hung-worker"),
        env={
            "THINNEST_MODELS_URL": proxy.url,
            "THINNEST_AGENT_NAME": AGENT_NAME,
            "THINNEST_WORKER_HEARTBEAT_INTERVAL": "1.0",
            "THINNEST_PROVIDER_TIMEOUT": str(TIMEOUT),
            "THINNEST_PROVIDER_RETRIES": str(RETRIES),
            # One failed turn does not end the call: the test sees what the agent does next.
            "THINNEST_PROVIDER_MAX_FAILURES": "2",
        },
    )
    api = start_api(
        make_settings(
            tmp_path_factory.mktemp("hung-api"),
            livekit_server,
            agent_name=AGENT_NAME,
            models_url=proxy.url,
            require_worker=True,
        ),
        database,
    )
    try:
        yield HungStack(proxy, worker, api)
    finally:
        api.stop()
        stop_worker(worker)
        proxy.stop()


@pytest.mark.parametrize(
    ("kind", "path", "mode"),
    [
        pytest.param("llm", "/v1/chat/completions", "silent", id="llm-never-answers"),
        pytest.param("llm", "/v1/chat/completions", "stalled", id="llm-stalls-after-headers"),
        pytest.param("stt", "/v1/audio/transcriptions", "silent", id="stt-never-answers"),
        pytest.param("tts", "/v1/audio/speech", "stalled", id="tts-stalls-after-headers"),
    ],
)
async def test_a_hung_model_service_is_bounded_by_the_provider_timeout(
    hung_stack: HungStack,
    tenant: Tenant,
    kind: str,
    path: str,
    mode: str,
    speak,
) -> None:
    proxy = hung_stack.proxy
    agent = assistant(tenant, error_message=SORRY)
    with hung_stack.api.client(tenant.key) as http:
        resp = await asyncio.to_thread(http.post, "/voice/start", json={"agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    started = resp.json()
    try:
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await greeted(client)
            proxy.held.clear()
            proxy.hang, proxy.mode = path, mode
            await client.play_wav(speak(QUESTION))
            try:
                failed = await client.next_event(90, type="error")
            except TimeoutError:
                pytest.fail(_story(client, hung_stack.worker, proxy))
            told = time.monotonic()
            assert failed["code"] == f"{kind}_failed", failed
            assert proxy.held, "no request reached the hung endpoint"
            # The turn failed a bounded time after the service stopped answering: a few
            # requests (the STT's preflight, then its final decode; the session's retry),
            # each given up after the provider timeout.
            first = proxy.held[0].arrived
            assert told - first < 4 * TIMEOUT + 10, _story(client, hung_stack.worker, proxy)
            if kind != "tts":  # a broken TTS cannot say sorry; the error event is all
                sorry = await client.next_event(60, type="transcript", role="agent")
                assert sorry["text"] == SORRY
        # No request held open outlived the provider timeout (some were cancelled sooner: a
        # preemptive answer whose transcript changed, the call's end).
        with contextlib.suppress(AssertionError):
            await asyncio.to_thread(
                until, lambda: all(h.dropped for h in proxy.held), TIMEOUT + 2, "the drops"
            )
        waits = [h.dropped - h.arrived if h.dropped is not None else None for h in proxy.held]
        print(f"{kind} {mode}: failed {told - first:.1f} s after the first hung request; {waits=}")
        assert all(w is not None and w < TIMEOUT + 2 for w in waits), waits
    finally:
        proxy.hang = None


def _story(client: VoiceClient, worker: Worker, proxy: HangingProxy) -> str:
    """Why an awaited event never came (or came late)."""
    told = "\n".join(str(m) for m in client.received)
    held = [(h.path, h.arrived, h.dropped) for h in proxy.held]
    return f"held: {held}\nevents:\n{told}\nworker log:\n{worker.text()[-6000:]}"
