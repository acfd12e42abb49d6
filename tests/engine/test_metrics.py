"""A worker's Prometheus /metrics after a real call: counted, ended, its turns' latencies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Tenant, free_port, make_settings, start_api
from tests.engine.conftest import heard, start_worker, stop_worker, wait_final
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


async def test_a_scrape_after_a_call_counts_it_and_its_turn_latencies(
    livekit_server: LiveKitDevServer,
    database: Database,
    database_url: str,
    tenant: Tenant,
    tmp_path: Path,
    speak,
) -> None:
    # A worker and an API of their own (agent name "thinnest-metrics"), so the scrape sees
    # this call only.
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    worker = start_worker(
        livekit_server,
        database_url,
        tmp_path / "worker",
        env={
            "THINNEST_AGENT_NAME": "thinnest-metrics",
            "THINNEST_WORKER_METRICS_PORT": str(port),
            "THINNEST_WORKER_MAX_JOBS": "3",
        },
    )
    side = start_api(
        make_settings(tmp_path, livekit_server, agent_name="thinnest-metrics"), database
    )
    try:
        idle = scrape(url)
        assert idle[("thinnest_worker_capacity_calls", frozenset())] == 3
        assert idle[("thinnest_worker_active_calls", frozenset())] == 0
        assert idle[("thinnest_calls_started_total", frozenset())] == 0

        agent = tenant.create_agent(greeting="Hello, ask me anything.", max_duration=120)
        with side.client(tenant.key) as http:
            resp = await asyncio.to_thread(
                http.post, "/voice/start", json={"agent_id": agent["id"]}
            )
        assert resp.status_code == 200, resp.text
        started = resp.json()
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await client.next_event(90, type="transcript", role="agent")
            await asyncio.sleep(2)
            assert scrape(url)[("thinnest_worker_active_calls", frozenset())] == 1
            await client.play_wav(speak("How many legs does a spider have?"))
            user = await client.next_event(60, type="transcript", role="user", final=True)
            assert heard(user["text"]), user["text"]
            await client.next_event(90, type="transcript", role="agent")
        row = await wait_final(database, started["session_id"], within=30)
        assert row.end_reason == "user_left"

        # The call process wrote its figures; the worker sums them once it ended.
        deadline = time.monotonic() + 15
        while True:
            after = scrape(url)
            if after.get(("thinnest_worker_active_calls", frozenset())) == 0:
                break
            assert time.monotonic() < deadline, "the call is still counted as active"
            await asyncio.sleep(0.5)
        assert after[("thinnest_calls_started_total", frozenset())] == 1
        assert after[("thinnest_calls_ended_total", frozenset({("reason", "user_left")}))] == 1
        for stage in ("end_of_turn_delay", "stt", "llm_ttft", "tts_ttfb"):
            key = ("thinnest_turn_latency_seconds_count", frozenset({("stage", stage)}))
            assert after.get(key, 0) >= 1, (stage, sorted(k for k in after if "latency" in k[0]))
        # The stored turns carry the numbers the histograms observed.
        row = await wait_final(database, started["session_id"])
        stored = sum(1 for t in row.turns if (t.latency or {}).get("stt") is not None)
        stt_count = ("thinnest_turn_latency_seconds_count", frozenset({("stage", "stt")}))
        assert after[stt_count] == stored
    finally:
        side.stop()
        stop_worker(worker)
