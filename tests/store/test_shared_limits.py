"""What API processes share through the database: each key's rate limit (GCRA) and the
backstop's lease; on SQLite and PostgreSQL, with threads standing in for processes (each takes
its own connection and transaction)."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from thinnest.store import leases, ratelimits
from thinnest.store.db import Database


def _take(database: Database, key: str, per_minute: int, now: float) -> float:
    with database.writing() as db:
        return ratelimits.take(db, key, per_minute, now=now)


def test_a_key_gets_its_rate_at_once_then_one_call_per_interval(database: Database) -> None:
    key, t0 = f"key_{secrets.token_hex(4)}", 1_000_000.0
    assert [_take(database, key, 6, t0) for _ in range(6)] == [0.0] * 6
    refused = _take(database, key, 6, t0)
    assert refused == pytest.approx(10.0)  # 6 a minute: the next one in 10 s
    assert _take(database, key, 6, t0 + 9.5) == pytest.approx(0.5)
    assert _take(database, key, 6, t0 + 10.0) == 0.0
    assert _take(database, key, 6, t0 + 10.0) > 0
    # A minute idle fills the bucket again, and no more than that.
    assert [_take(database, key, 6, t0 + 600) for _ in range(7)].count(0.0) == 6
    other = f"key_{secrets.token_hex(4)}"
    assert _take(database, other, 6, t0) == 0.0  # keys are apart


def test_processes_taking_one_key_at_once_get_exactly_its_rate(database: Database) -> None:
    key, now = f"key_{secrets.token_hex(4)}", 2_000_000.0
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _take(database, key, 20, now), range(50)))
    assert results.count(0.0) == 20, results


def test_one_holder_has_a_lease_until_it_runs_out_or_is_given_up(database: Database) -> None:
    name, t0 = f"lease_{secrets.token_hex(4)}", 3_000_000.0

    def acquire(holder: str, now: float) -> bool:
        with database.writing() as db:
            return leases.acquire(db, name, holder, ttl=30, now=now)

    assert acquire("api-1", t0)
    assert not acquire("api-2", t0 + 1)
    assert acquire("api-1", t0 + 20)  # renewed: runs to t0 + 50
    assert not acquire("api-2", t0 + 45)
    assert acquire("api-2", t0 + 51)  # api-1 stopped renewing: api-2 takes over
    with database.session() as db:
        assert leases.holder(db, name, now=t0 + 52) == "api-2"
        leases.release(db, name, "api-1")  # not its lease: nothing happens
        assert leases.holder(db, name, now=t0 + 52) == "api-2"
        leases.release(db, name, "api-2")
        assert leases.holder(db, name, now=t0 + 52) is None
    assert acquire("api-1", t0 + 53)


def test_of_many_processes_asking_for_a_free_lease_one_gets_it(database: Database) -> None:
    name, now = f"lease_{secrets.token_hex(4)}", 4_000_000.0
    start = threading.Barrier(6, timeout=20)

    def acquire(holder: str) -> bool:
        start.wait()
        with database.writing() as db:
            return leases.acquire(db, name, holder, ttl=30, now=now)

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(acquire, [f"api-{i}" for i in range(6)]))
    assert got.count(True) == 1, got
