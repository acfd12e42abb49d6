"""Real calls whose models live in the shared service: API, LiveKit server, a worker that is
the service's client, a real ``thinnest models`` process and an rtc client speaking."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import Tenant
from tests.engine.conftest import ToolServer, Worker, heard, wait_final
from tests.modelsvc.conftest import (
    AGENT_NAME,
    QUESTION,
    SERVICES_SLOTS,
    ModelService,
    ask,
    assistant,
    greeted,
    until,
)
from thinnest.client import VoiceClient
from thinnest.store import workers
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

#: Libraries of the models: a job process that maps one holds a model of its own.
_MODEL_LIBRARIES = ("ctranslate2", "libllama", "libggml", "piper", "hibari", "espeak-ng-data")


async def _start(tenant: Tenant, agent: dict[str, object]) -> dict[str, str]:
    resp = await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _start_when_models_are_back(tenant: Tenant, agent: dict[str, object]) -> dict[str, str]:
    deadline = time.monotonic() + 15
    while True:
        resp = await asyncio.to_thread(
            tenant.http.post, "/voice/start", json={"agent_id": agent["id"]}
        )
        refused = resp.status_code == 503 and resp.json()["error"]["code"] == "models_unavailable"
        if not refused or time.monotonic() > deadline:
            assert resp.status_code == 200, resp.text
            return dict(resp.json())
        await asyncio.sleep(0.5)


def _free_slots(database: Database) -> int:
    with database.session() as db:
        return workers.free_slots(workers.live_workers(db, AGENT_NAME, within=3.0), db)


async def _all_ended(database: Database, session_ids: list[str]) -> None:
    for session_id in session_ids:
        row = await wait_final(database, session_id, within=60)
        assert row.status == "ended", row.error


def _story(client: VoiceClient, worker: Worker) -> str:
    """What the client was told, and the worker's log: why an awaited event never came."""
    told = "\n".join(json.dumps(m) for m in client.received)
    return f"events:\n{told}\nworker log:\n{worker.text()[-6000:]}"


def _job_processes(worker: Worker) -> list[psutil.Process]:
    return psutil.Process(worker.process.pid).children(recursive=True)


def _model_libraries(proc: psutil.Process) -> set[str]:
    try:
        maps = proc.memory_maps()
    except psutil.Error:
        return set()
    return {lib for m in maps for lib in _MODEL_LIBRARIES if lib in m.path}


async def test_a_call_is_answered_by_the_shared_models_and_its_process_loads_none(
    services_worker: Worker, services_tenant: Tenant, database: Database, speak
) -> None:
    agent = assistant(services_tenant)
    started = await _start(services_tenant, agent)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        greeting = await greeted(client)
        assert "Thinnest" in greeting["text"]
        user, _reply = await ask(client, speak)
        assert heard(user["text"]), user["text"]
        assert client.speech_ended_at is not None
        assert client.audio.first_voiced_after(client.speech_ended_at) is not None
        # The call's process (and every other of the worker) holds no model.
        procs = [services_worker.process, *_job_processes(services_worker)]
        holding = {p.pid: _model_libraries(psutil.Process(p.pid)) for p in procs}
        assert not any(holding.values()), holding
    row = await wait_final(database, started["session_id"], within=60)
    assert [t.role for t in row.turns][:3] == ["agent", "user", "agent"]


def _order_status(query: dict[str, list[str]]) -> dict[str, object]:
    order = (query.get("order_id") or ["?"])[0]
    return {"order_id": order, "status": "shipped", "arrives": "Friday"}


@pytest.fixture
def orders() -> Iterator[ToolServer]:
    """A local order-status endpoint that records the orders it was asked about."""
    with ToolServer("/orders", _order_status) as server:
        yield server


async def test_the_shipped_model_calls_a_tool_through_the_llm_server(
    services_worker: Worker,
    services_tenant: Tenant,
    database: Database,
    orders: ToolServer,
    speak,
) -> None:
    # No greeting: after one (an assistant turn before the caller's), the 0.5B model answers
    # in its style and never calls a tool (0 of 12 order questions); with the greeting in the
    # system prompt instead it called end_call on plain questions.
    agent = services_tenant.create_agent(
        greeting=None,
        instructions=(
            "You are an order-status assistant. When the user asks about an order, call "
            "get_order_status with the order number, then tell the user its status."
        ),
        providers={"stt": {"name": "whisper", "options": {"model": "base"}}},
        tools=[
            {
                "name": "get_order_status",
                "description": "The status of an order, by its order number",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
                "url": orders.url,
                "method": "GET",
                "timeout": 5,
            }
        ],
        max_duration=150,
    )
    started = await _start(services_tenant, agent)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await client.next_event(90, type="agent_state", state="listening")
        await asyncio.sleep(1.0)
        await client.play_wav(speak("Where is my order one two three four five?"))
        try:
            call = await client.next_event(120, type="tool_call", name="get_order_status")
        except TimeoutError:
            pytest.fail(_story(client, services_worker))
        assert "error" not in call, call
        reply = await client.next_event(120, type="transcript", role="agent")
        assert reply["text"].strip()
    asked = [(query.get("order_id") or ["?"])[0] for query in orders.requests]
    assert asked, "the HTTP tool was never called"
    digits = "".join(c for c in asked[0] if c.isdigit())
    assert "12345" in digits or "12345" in asked[0].replace(" ", ""), asked
    row = await wait_final(database, started["session_id"], within=60)
    assert row.tool_calls and row.tool_calls[0].name == "get_order_status"


def _llm_server(service: ModelService) -> psutil.Process:
    assert service.process is not None
    for child in psutil.Process(service.process.pid).children(recursive=True):
        if "llama-server" in child.name():
            return child
    raise AssertionError("no llama-server under the model service")


async def test_a_dead_llm_server_is_restarted_and_the_call_goes_on(
    services_worker: Worker,
    services_tenant: Tenant,
    models_service: ModelService,
    speak,
) -> None:
    agent = assistant(services_tenant, max_duration=150)
    started = await _start(services_tenant, agent)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await greeted(client)
        before = _llm_server(models_service)
        before.kill()
        # The service notices, starts a new one, and says so in /healthz.
        await asyncio.to_thread(
            until,
            lambda: models_service.healthy() and _llm_server(models_service).pid != before.pid,
            90,
            "the LLM server's restart",
        )
        await ask(client, speak)
    assert "restart 1" in models_service.text()


async def test_a_killed_service_ends_or_apologises_and_the_next_call_works(
    services_worker: Worker,
    services_tenant: Tenant,
    models_service: ModelService,
    database: Database,
    speak,
) -> None:
    agent = assistant(services_tenant)
    started = await _start(services_tenant, agent)
    try:
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await greeted(client)
            models_service.kill()
            t0 = time.monotonic()
            await client.play_wav(speak(QUESTION))
            # The caller is told: an error event for the failed turn (an apology needs the
            # TTS, which is down too), and the call ends with `error` after a few of them.
            try:
                told = await client.next_event(90, type="error")
            except TimeoutError:
                pytest.fail(_story(client, services_worker))
            assert told["code"].endswith("_failed"), told
            assert time.monotonic() - t0 < 90
    finally:
        await asyncio.to_thread(models_service.start)
    # Back: the worker sees it at its next heartbeat (until then: 503 models_unavailable),
    # and a new call is answered.
    second = await _start_when_models_are_back(services_tenant, agent)
    async with VoiceClient(second["livekit_url"], second["token"]) as client:
        await greeted(client)
        await ask(client, speak)


async def test_calls_offered_together_to_an_idle_worker_are_all_greeted(
    services_worker: Worker, services_tenant: Tenant, database: Database
) -> None:
    """A worker counted each call it was still accepting as half its capacity when none was
    running (livekit-agents' estimate: the load threshold over the 2 idle processes), so the
    third of calls started together was refused, and LiveKit never offered it again: no
    agent joined (CI's concurrency bench: "no greeting within 240 s"). Twice, all its slots
    are started at once; every call is greeted."""

    def free() -> int:
        return _free_slots(database)

    agent = assistant(services_tenant)
    session_ids: list[str] = []
    for _round in range(2):
        await asyncio.to_thread(until, lambda: free() == SERVICES_SLOTS, 120, "all slots free")
        starts = await asyncio.gather(
            *(_start(services_tenant, agent) for _ in range(SERVICES_SLOTS))
        )
        session_ids += [s["session_id"] for s in starts]
        clients = [VoiceClient(s["livekit_url"], s["token"]) for s in starts]
        try:
            await asyncio.gather(*(c.connect() for c in clients))
            for n, client in enumerate(clients, 1):
                try:
                    await client.next_event(90, type="transcript", role="agent")
                except TimeoutError:
                    pytest.fail(
                        f"call {n} of {len(clients)} got no greeting\n"
                        + _story(client, services_worker)
                    )
        finally:
            for client in clients:
                await client.aclose()
    await _all_ended(database, session_ids)


async def test_a_worker_greets_every_call_up_to_its_capacity_started_one_by_one(
    services_worker: Worker, services_tenant: Tenant, database: Database
) -> None:
    """LiveKit sends no call to a worker whose reported load is at its ``target_load`` (0.7
    unless configured): a worker of 4 slots that reported 3/4 got no 4th call. Calls started
    together hid it (LiveKit still saw the load from before them); one by one, each after the
    previous was greeted and the worker's load had reached LiveKit, the 4th got no agent. And a
    call started the moment a slot frees is answered."""

    def free() -> int:
        return _free_slots(database)

    await asyncio.to_thread(until, lambda: free() == SERVICES_SLOTS, 120, "all slots free")
    agent = assistant(services_tenant)
    session_ids = []
    clients: list[VoiceClient] = []

    async def call(n: int) -> None:
        started = await _start(services_tenant, agent)
        session_ids.append(started["session_id"])
        client = VoiceClient(started["livekit_url"], started["token"])
        clients.append(client)
        await client.connect()
        try:
            await client.next_event(60, type="transcript", role="agent")
        except TimeoutError:
            pytest.fail(f"call {n} got no greeting\n" + _story(client, services_worker))

    try:
        for n in range(1, SERVICES_SLOTS + 1):
            await call(n)
            # The worker's status (with its load) goes to LiveKit every 2.5 s.
            await asyncio.sleep(3.0)
        # Full. One caller hangs up, and a call starts the moment the API counts the slot
        # free: LiveKit must know it is free too (it used to learn it up to 2.5 s later, and
        # dropped the dispatch to the worker it still thought full).
        await clients.pop(0).aclose()
        await asyncio.to_thread(until, lambda: free() >= 1, 60, "the slot freed")
        await call(SERVICES_SLOTS + 1)
    finally:
        for client in clients:
            await client.aclose()
    await _all_ended(database, session_ids)
