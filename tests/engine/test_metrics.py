"""A worker's Prometheus /metrics after a real call: counted, ended, its turn latencies;
and the call's turns traced to an OTLP collector."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Tenant, free_port, make_settings, start_api
from tests.engine.conftest import (
    ToolServer,
    ask_the_weather,
    scripted_weather_agent,
    start_worker,
    stop_worker,
    wait_final,
)
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store.db import Database
from thinnest.testing import ScriptedChatServer

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


class Collector:
    """A local OTLP/HTTP traces receiver: each span's name and attributes, as sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attrs = {a.key: a.value.string_value for a in span.attributes}
                            outer.spans.append((span.name, attrs))
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_call_is_counted_its_turn_latencies_observed_and_its_turns_traced(
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
    collector = Collector()
    scripted = ScriptedChatServer().start()
    tool = ToolServer("/weather", lambda _query: {"forecast": "sunny, 21 C"})
    worker = start_worker(
        livekit_server,
        database_url,
        tmp_path / "worker",
        env={
            "THINNEST_AGENT_NAME": "thinnest-metrics",
            "THINNEST_WORKER_METRICS_PORT": str(port),
            "THINNEST_WORKER_MAX_JOBS": "3",
            "THINNEST_OTLP_TRACES_ENDPOINT": collector.url,
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

        agent = scripted_weather_agent(tenant, scripted.base_url, tool.url)
        with side.client(tenant.key) as http:
            resp = await asyncio.to_thread(
                http.post, "/voice/start", json={"agent_id": agent["id"]}
            )
        assert resp.status_code == 200, resp.text
        started = resp.json()
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            called = await ask_the_weather(client, speak)  # the greeting, then the question
            assert called.get("error") is None, called
            # (Scraped once the agent spoke: joining the room comes before the job starts.)
            assert scrape(url)[("thinnest_worker_active_calls", frozenset())] == 1
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
        assert after[("thinnest_tool_calls_total", frozenset({("outcome", "ok")}))] == 1
        for stage in ("end_of_turn_delay", "stt", "llm_ttft", "tts_ttfb"):
            key = ("thinnest_turn_latency_seconds_count", frozenset({("stage", stage)}))
            assert after.get(key, 0) >= 1, (stage, sorted(k for k in after if "latency" in k[0]))
        # The stored turns carry the numbers the histograms observed.
        row = await wait_final(database, started["session_id"])
        stored = sum(1 for t in row.turns if (t.latency or {}).get("stt") is not None)
        stt_count = ("thinnest_turn_latency_seconds_count", frozenset({("stage", "stt")}))
        assert after[stt_count] == stored

        # The call process sent livekit-agents' spans of the turns, tagged with the session,
        # when the call ended.
        deadline = time.monotonic() + 15
        while not {"user_turn", "agent_turn"} <= {name for name, _ in collector.spans}:
            assert time.monotonic() < deadline, sorted({name for name, _ in collector.spans})
            await asyncio.sleep(0.5)
        turns = [attrs for name, attrs in collector.spans if name == "user_turn"]
        assert all(a["thinnest.session_id"] == started["session_id"] for a in turns)
        # What the caller said (and the tool was asked) stays out of the spans unless
        # THINNEST_OTLP_TRACES_CONTENT.
        said = [v for _, attrs in collector.spans for v in attrs.values() if "paris" in v.lower()]
        assert said == []
    finally:
        side.stop()
        stop_worker(worker)
        collector.close()
        scripted.stop()
        tool.__exit__()
