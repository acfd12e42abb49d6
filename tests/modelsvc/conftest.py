"""Fixtures of the model service tests: a real ``thinnest models`` process, and an API and a
worker that are its clients (under an agent name of their own, so the engine tests' worker
with in-process models never takes their calls)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApi, Tenant, free_port, make_settings, start_api
from tests.engine.conftest import REPO, Worker, speak, start_worker, stop_worker
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import keys
from thinnest.store.db import Database

__all__ = ["speak"]  # the engine tests' fixture, for these tests too

AGENT_NAME = "thinnest-services-test"
#: The caller's question in these tests' calls.
QUESTION = "Please tell me quickly how many legs does a spider have?"


@dataclass
class ModelService:
    """A running ``thinnest models``; :meth:`kill` and :meth:`start` for fault tests."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "models.log"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, *, wait: float = 240) -> None:
        env = {
            **os.environ,
            "THINNEST_MODELS_PORT": str(self.port),
            "THINNEST_DATA_DIR": str(self.workdir),
            "THINNEST_MODELS_DIR": str(REPO / ".thinnest" / "models"),
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("THINNEST_MODELS_URL", None)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "thinnest", "models"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"`thinnest models` did not become healthy:\n{self.text()[-3000:]}")
            time.sleep(0.3)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the service's whole process group (its LLM server with it)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.kill()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


@pytest.fixture(scope="session")
def models_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelService]:
    service = ModelService(free_port(), tmp_path_factory.mktemp("models"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def services_api(
    livekit_server: LiveKitDevServer,
    database: Database,
    models_service: ModelService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningApi]:
    """An API that dispatches to the services' worker and checks the services' health."""
    settings = make_settings(
        tmp_path_factory.mktemp("services-api"),
        livekit_server,
        rate_limit_per_minute=10000,
        agent_name=AGENT_NAME,
        models_url=models_service.url,
        require_worker=True,
        sweep_interval=2.0,
        worker_heartbeat_interval=1.0,
    )
    running = start_api(settings, database)
    yield running
    running.stop()


#: The calls the services' worker takes at once.
SERVICES_SLOTS = 4


@pytest.fixture(scope="session")
def services_worker(
    livekit_server: LiveKitDevServer,
    database_url: str,
    database: Database,
    models_service: ModelService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """A `thinnest worker` whose job processes load no model: every call uses the service."""
    w = start_worker(
        livekit_server,
        database_url,
        tmp_path_factory.mktemp("services-worker"),
        env={
            "THINNEST_MODELS_URL": models_service.url,
            "THINNEST_AGENT_NAME": AGENT_NAME,
            "THINNEST_WORKER_HEARTBEAT_INTERVAL": "1.0",
            # The default on 2 cores, set so a machine with more cores tests the same.
            "THINNEST_WORKER_MAX_JOBS": str(SERVICES_SLOTS),
        },
    )
    yield w
    stop_worker(w)


@pytest.fixture
def services_tenant(services_api: RunningApi, database: Database) -> Iterator[Tenant]:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"services-{os.getpid()}-{time.monotonic_ns()}")
        _row, plaintext = keys.create_key(db, owner)
        owner_id, name = owner.id, owner.name
    client = services_api.client(plaintext)
    yield Tenant(owner_id, name, plaintext, client)
    client.close()


def until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.2)


def assistant(tenant: Tenant, **fields: object) -> dict[str, object]:
    """An agent of ``tenant`` that greets ("Hello, this is Thinnest.") and answers in one
    short sentence; ``fields`` add to or replace these."""
    return tenant.create_agent(
        **{
            "greeting": "Hello, this is Thinnest.",
            "instructions": "You are a friendly assistant. Answer in one short sentence.",
            "max_duration": 120,
            **fields,
        }
    )


async def greeted(client: VoiceClient) -> dict[str, Any]:
    """The agent's greeting, once heard, and a pause after it: the caller speaks next."""
    greeting = await client.next_event(90, type="transcript", role="agent")
    await asyncio.sleep(2.5)
    return greeting


async def ask(
    client: VoiceClient, speak: Callable[[str], Path], question: str = QUESTION
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Say ``question``: the caller's final transcript, and the agent's answer (not empty)."""
    await client.play_wav(speak(question))
    user = await client.next_event(60, type="transcript", role="user", final=True)
    reply = await client.next_event(90, type="transcript", role="agent")
    assert reply["text"].strip()
    return user, reply
