"""A provider that hangs or fails mid-call: the agent apologises and listens on; after
``provider_max_failures`` failed turns in a row the call ends with reason ``error``.

Real stack (LiveKit server, API, a worker of its own with short provider timeouts), the
real ``openai`` provider against a scripted endpoint that stalls, then answers HTTP 500.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import Tenant, free_port, make_settings, start_api
from tests.engine.conftest import QUESTION, start_worker, stop_worker, wait_final
from tests.engine.test_metrics import scrape
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

pytestmark = pytest.mark.integration

SORRY = "Sorry, something went wrong on my side. Could you say that again?"


async def test_hung_then_failing_llm_apologises_then_ends_with_error(
    livekit_server: LiveKitDevServer,
    database: Database,
    database_url: str,
    tenant: Tenant,
    tmp_path: Path,
    speak,
) -> None:
    llm = ScriptedChatServer(fault="stall").start()
    metrics_port = free_port()
    worker = start_worker(
        livekit_server,
        database_url,
        tmp_path / "worker",
        env={
            "THINNEST_AGENT_NAME": "thinnest-faults",
            "THINNEST_PROVIDER_TIMEOUT": "2",
            "THINNEST_PROVIDER_RETRIES": "1",
            "THINNEST_PROVIDER_MAX_FAILURES": "2",
            "THINNEST_WORKER_METRICS_PORT": str(metrics_port),
        },
    )
    side = start_api(
        make_settings(tmp_path, livekit_server, agent_name="thinnest-faults", require_worker=True),
        database,
    )
    try:
        agent = tenant.create_agent(
            greeting="Hello, ask me anything.",
            error_message=SORRY,
            providers={
                "llm": {"name": "openai", "options": {"base_url": llm.base_url, "model": "x"}}
            },
            max_duration=180,
        )
        with side.client(tenant.key) as http:
            resp = await asyncio.to_thread(
                http.post, "/voice/start", json={"agent_id": agent["id"]}
            )
        assert resp.status_code == 200, resp.text
        started = resp.json()
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await client.next_event(90, type="transcript", role="agent")
            await asyncio.sleep(1)
            # Turn 1: the LLM hangs. Each try fails after 2 s of silence, one retry, then the
            # agent says its error message, out loud, instead of leaving the caller in silence.
            asked = time.monotonic()
            await client.play_wav(speak(QUESTION))
            failed = await client.next_event(90, type="error")
            assert failed["code"] == "llm_failed"
            sorry = await client.next_event(60, type="transcript", role="agent")
            assert sorry["text"] == SORRY
            assert client.audio.first_voiced_after(asked + 1) is not None, "no apology audio"
            assert len(llm.requests) >= 2, "the hung request was not retried"

            # Turn 2: the LLM is down (HTTP 500): the second failed turn in a row ends the call.
            llm.fault = "error"
            await asyncio.sleep(4)  # let the apology finish playing
            await client.play_wav(speak("Are you still there?"))
            ended = await client.next_event(90, type="call_ended")
            assert ended["reason"] == "error"
            errors = [e for e in client.received if e.get("type") == "error"]
            assert errors[-1]["code"] == "llm_failed" and "ending" in errors[-1]["message"]

        row = await wait_final(database, started["session_id"])
        assert (row.status, row.end_reason) == ("error", "error")
        texts = [(t.role, t.text) for t in row.turns]
        assert ("agent", "Hello, ask me anything.") in texts
        assert ("agent", SORRY) in texts
        assert any(role == "user" for role, _ in texts), "the user's turns were not stored"

        # The worker's metrics count each error by provider and kind: the hang as timeouts,
        # the HTTP 500 as status errors; the two turns that failed after their retries as
        # final; and the call's end.
        errors = {
            dict(labels)["error"] + "/" + dict(labels)["final"]: value
            for (name, labels), value in scrape(f"http://127.0.0.1:{metrics_port}/metrics").items()
            if name == "thinnest_provider_errors_total"
            and dict(labels)["kind"] == "llm"
            and dict(labels)["provider"] == "openai"
        }
        assert errors.get("timeout/false", 0) >= 1 and errors.get("status/false", 0) >= 1, errors
        assert errors.get("timeout/true", 0) + errors.get("status/true", 0) == 2, errors
    finally:
        side.stop()
        stop_worker(worker)
        llm.stop()
