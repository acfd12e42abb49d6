"""``thinnest serve --workers 2``: two API processes on one port, as deployed. A key's rate
limit holds across them; one killed under load costs only the requests it held (no 5xx from
the other) and is started again."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from thinnest.contracts.agent import AgentConfig
from thinnest.store import agents, keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def processes(self) -> list[psutil.Process]:
        """The API processes (uvicorn's children that run the app, not its helpers)."""
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {
        **os.environ,
        "THINNEST_DATA_DIR": str(tmp_path),
        "THINNEST_DATABASE_URL": database_url,
        # LiveKit unreachable: a start is refused 503 after the rate limit took its call.
        "THINNEST_LIVEKIT_URL": f"http://127.0.0.1:{free_port()}",
        "THINNEST_LIVEKIT_API_KEY": "APIx",
        "THINNEST_LIVEKIT_API_SECRET": "s" * 40,
        "THINNEST_LIVEKIT_TIMEOUT": "1",
        "THINNEST_REQUIRE_WORKER": "false",
        "THINNEST_RATE_LIMIT_PER_MINUTE": "4",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 120
        while len(running.processes()) < 2 or not _healthy(running.base):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not up:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tenant(database: Database) -> tuple[str, str]:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"served-{secrets.token_hex(4)}")
        _row, key = keys.create_key(db, owner)
        agent_id = agents.create_agent(db, owner.id, AgentConfig(name="served")).id
    return key, agent_id


def test_a_key_gets_its_rate_across_the_processes(served: Served, database: Database) -> None:
    key, agent_id = _tenant(database)
    statuses = []
    for _ in range(8):
        # A connection each: the kernel hands them to either process.
        with httpx.Client(base_url=served.base, timeout=30) as http:
            resp = http.post(
                "/voice/start",
                json={"agent_id": agent_id},
                headers={"Authorization": f"Bearer {key}"},
            )
        statuses.append(resp.status_code)
    assert statuses == [503] * 4 + [429] * 4, statuses


def test_a_process_killed_under_load_costs_no_5xx_and_is_started_again(
    served: Served, database: Database
) -> None:
    key, _agent_id = _tenant(database)
    answers: list[int] = []
    dropped: list[str] = []
    stop = threading.Event()

    def load() -> None:
        # Bounded: at most 400 requests, 60 s.
        deadline = time.monotonic() + 60
        for _ in range(400):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                with httpx.Client(base_url=served.base, timeout=10) as http:
                    resp = http.get("/voice/sessions", headers={"Authorization": f"Bearer {key}"})
                answers.append(resp.status_code)
            except httpx.TransportError as exc:
                dropped.append(type(exc).__name__)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        victim = served.processes()[0]
        victim.kill()
        time.sleep(3.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    story = (
        f"answers {sorted(set(answers))} ({len(answers)}), dropped {dropped}\n"
        + (served.log.read_text(errors="replace")[-3000:])
    )
    assert answers and not [s for s in answers if s >= 500], story
    assert set(answers) == {200}, story
    # Only the requests the killed process held (at most one per load thread) were lost.
    assert len(dropped) <= len(threads), story
    deadline = time.monotonic() + 60
    while len(served.processes()) < 2 or victim.pid in [p.pid for p in served.processes()]:
        assert time.monotonic() < deadline, f"the killed process was not started again\n{story}"
        time.sleep(0.3)
    assert _healthy(served.base)
