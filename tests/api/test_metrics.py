"""The API's Prometheus /metrics: a scrape after voice starts counts them by status."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


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
