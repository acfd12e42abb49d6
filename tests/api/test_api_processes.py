"""Several API processes on one database (as ``thinnest serve --workers N`` or several hosts
run them): a key gets its rate limit across all of them together, and one of them runs the
lost-session backstop, another taking it over when that one stops. Each API here is a real
app on its own uvicorn server; they share only the database, as processes do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunningApi, Tenant, free_port, make_settings, start_api
from thinnest.api import backstop
from thinnest.store import leases
from thinnest.store.db import Database


def _two_apis(database: Database, tmp_path: Path, **overrides: object) -> list[RunningApi]:
    # LiveKit unreachable: each start is refused 503 after the rate limit took its call, so
    # the test counts the limit's answers without starting real calls.
    down = f"http://127.0.0.1:{free_port()}"
    return [
        start_api(
            make_settings(
                tmp_path / f"api{i}",
                None,
                livekit_url=down,
                livekit_api_key="APIx",
                livekit_api_secret="s" * 40,
                livekit_timeout=1.0,
                **overrides,
            ),
            database,
        )
        for i in range(2)
    ]


def _alternate_starts(apis: list[RunningApi], tenant: Tenant, agent_id: str, n: int) -> list[int]:
    statuses = []
    for i in range(n):
        with apis[i % 2].client(tenant.key) as http:
            resp = http.post("/voice/start", json={"agent_id": agent_id})
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert resp.json()["error"]["code"] == "rate_limited"
                assert int(resp.headers["Retry-After"]) >= 1
    return statuses


@pytest.mark.parametrize("store", ["database", "memory"])
def test_a_key_gets_its_rate_across_api_processes(
    store: str, database: Database, tmp_path: Path, make_tenant: Callable[[], Tenant]
) -> None:
    apis = _two_apis(database, tmp_path, rate_limit_per_minute=5, rate_limit_store=store)
    try:
        tenant = make_tenant()
        agent = tenant.create_agent()
        statuses = _alternate_starts(apis, tenant, agent["id"], 10)
    finally:
        for running in apis:
            running.stop()
    if store == "database":
        assert statuses == [503] * 5 + [429] * 5, statuses
    else:  # each process its own bucket: the key gets its rate twice over
        assert statuses == [503] * 10, statuses


def _holder(database: Database) -> str | None:
    with database.session() as db:
        return leases.holder(db, backstop.LEASE, now=time.time())


def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        time.sleep(0.1)


def test_one_api_process_sweeps_and_another_takes_over_when_it_stops(
    fresh_database: Database, tmp_path: Path
) -> None:
    first = start_api(make_settings(tmp_path / "a", None, sweep_interval=0.3), fresh_database)
    second = None
    try:
        _until(lambda: _holder(fresh_database) is not None, 10, "the first API taking the lease")
        leader = _holder(fresh_database)
        second = start_api(make_settings(tmp_path / "b", None, sweep_interval=0.3), fresh_database)
        time.sleep(2.0)  # several rounds of both
        assert _holder(fresh_database) == leader, "the second API took a lease that was held"
        first.stop()
        _until(
            lambda: _holder(fresh_database) not in (None, leader),
            10,
            "the second API taking the lease over",
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
