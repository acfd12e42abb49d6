"""The API's Prometheus /metrics: a scrape after voice starts counts them by status, webhook
attempts by result; under ``thinnest serve --workers 2`` either process answers with the
counts of both."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.api import test_serve_processes, test_webhooks
from tests.api.test_serve_processes import Served
from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.webhook_receiver import Receiver
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

#: `thinnest serve --workers 2` (this module's own).
served = test_serve_processes.served
#: An API on a fresh database that retries webhooks within seconds.
make_api = test_webhooks.make_api


def scrape(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics scrape: (name, labels) -> value."""
    resp = http.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def test_a_scrape_counts_voice_starts_by_status_and_times_the_route(
    api: RunningApi, tenant: Tenant
) -> None:
    agent = tenant.create_agent()
    with api.client() as anonymous:
        before = scrape(anonymous)
        assert tenant.http.post("/voice/start", json={"agent_id": agent["id"]}).status_code == 200
        missing = tenant.http.post("/voice/start", json={"agent_id": "agent_nope"})
        assert missing.status_code == 404
        after = scrape(anonymous)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("thinnest_voice_starts_total", status="200") == 1
    assert grew("thinnest_voice_starts_total", status="404") == 1
    timed = {"method": "POST", "route": "/voice/start", "status": "200"}
    assert grew("thinnest_http_request_duration_seconds_count", **timed) == 1
    assert grew("thinnest_http_request_duration_seconds_sum", **timed) > 0
    # A route with an id is counted under its template, not one series per id.
    assert not any("agent_nope" in str(labels) for _name, labels in after)
    # The live workers' figures, read from their heartbeats, come with every scrape.
    for gauge in ("live", "active_calls", "capacity_calls"):
        assert (f"thinnest_workers_{gauge}", frozenset()) in after


def test_metrics_can_be_turned_off(tmp_path, livekit_server, database: Database) -> None:  # type: ignore[no-untyped-def]
    off = start_api(make_settings(tmp_path, livekit_server, metrics_enabled=False), database)
    try:
        with off.client() as http:
            assert http.get("/metrics").status_code == 404
    finally:
        off.stop()


def test_either_api_process_answers_a_scrape_with_the_counts_of_both(
    served: Served, database: Database
) -> None:
    key, _agent = test_serve_processes._tenant(database)
    listed = frozenset({("method", "GET"), ("route", "/voice/sessions"), ("status", "200")})
    pids = [p.pid for p in served.processes()]
    folder = Path(psutil.Process(pids[0]).environ()["PROMETHEUS_MULTIPROC_DIR"])

    def counted_by(pid: int) -> float:
        """The listing requests process ``pid`` counted, from its own file."""
        file = folder / f"histogram_{pid}.db"
        if not file.exists():
            return 0
        total = 0.0
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(file)):
            _family, sample, labels, _help = json.loads(key)  # prometheus_client's file key
            # The file holds each bucket's own count (a scrape adds them up): their sum is
            # the requests observed.
            if sample.endswith("_bucket") and labels.get("route") == "/voice/sessions":
                total += value
        return total

    sent = 0
    # A connection each: the kernel hands them to either process; go on until both served.
    while sent < 8 or not all(counted_by(pid) for pid in pids):
        assert sent < 100, [counted_by(pid) for pid in pids]
        with httpx.Client(base_url=served.base, timeout=30) as http:
            resp = http.get("/voice/sessions", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        sent += 1
    seen = []
    for _ in range(6):
        with httpx.Client(base_url=served.base, timeout=30) as http:
            seen.append(scrape(http)[("thinnest_http_request_duration_seconds_count", listed)])
    assert seen == [sent] * 6


def test_webhook_attempts_are_counted_by_result_and_error(
    make_api: test_webhooks.MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    with (
        Receiver([500]) as flaky,
        Receiver(default=500) as broken,
        api.client(test_webhooks._key(fresh_database)) as http,
    ):
        hooks = [test_webhooks._create(http, r.url)["id"] for r in (flaky, broken)]
        before = scrape(http)
        for hook in hooks:
            test_webhooks._test_event(http, hook)
            test_webhooks._settled(http, hook)
        after = scrape(http)

    def grew(result: str, error: str) -> float:
        key = ("thinnest_webhook_attempts_total", frozenset({("result", result), ("error", error)}))
        return after.get(key, 0.0) - before.get(key, 0.0)

    # flaky: a 500, retried, then delivered; broken: 500s until the 3 s retry window ends
    assert grew("delivered", "none") == 1
    assert grew("retry", "status") == 1 + 2
    assert grew("failed", "status") == 1
