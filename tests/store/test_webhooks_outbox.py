"""The webhook outbox: events are queued in the transaction of the change they report, once
per subscribed endpoint, and of many processes claiming a due delivery exactly one gets it
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
from sqlalchemy import select

from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.store import keys, sessions, webhooks
from thinnest.store.db import Database
from thinnest.store.models import WebhookDelivery

pytestmark = pytest.mark.integration

ALL = ["session.started", "session.ended", "tool.failed"]


def _owner(database: Database, *endpoints: tuple[list[str], bool]) -> tuple[str, list[str]]:
    """A new owner with endpoints of (events, enabled); returns its id and the endpoints'."""
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"hooks-{secrets.token_hex(4)}")
        ids = [
            webhooks.create_endpoint(
                db,
                owner.id,
                url="http://127.0.0.1:9/hook",
                events=events,
                description="",
                enabled=enabled,
            ).id
            for events, enabled in endpoints
        ]
        return owner.id, ids


def _session(database: Database, owner_id: str, status: SessionStatus) -> str:
    with database.session() as db:
        return sessions.create_session(
            db,
            owner_id=owner_id,
            agent_id="agent_x",
            agent_config={},
            context={},
            max_duration=60,
            status=status,
        ).id


def _deliveries(database: Database, owner_id: str) -> list[WebhookDelivery]:
    with database.session() as db:
        return list(db.scalars(select(WebhookDelivery).where(WebhookDelivery.owner_id == owner_id)))


def test_two_closers_enqueue_one_session_ended_per_subscribed_endpoint(
    database: Database,
) -> None:
    owner_id, (every, _tools_only, _disabled) = _owner(
        database, (ALL, True), (["tool.failed"], True), (ALL, False)
    )
    session_id = _session(database, owner_id, SessionStatus.ACTIVE)
    both_read = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def close(reason: EndReason) -> None:
        try:
            with database.session() as db:
                row = sessions.get_session(db, session_id)
                both_read.wait()
                sessions.finalize(db, row, status=SessionStatus.ENDED, reason=reason)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=close, args=(r,))
        for r in (EndReason.USER_LEFT, EndReason.ENDED_BY_API)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    rows = _deliveries(database, owner_id)
    assert [(r.endpoint_id, r.event_type, r.subject_id) for r in rows] == [
        (every, "session.ended", session_id)
    ]
    assert rows[0].status == "pending" and rows[0].due_at > time.time()  # it settles first


def test_a_close_that_rolls_back_leaves_no_delivery(database: Database) -> None:
    owner_id, _ = _owner(database, (ALL, True))
    session_id = _session(database, owner_id, SessionStatus.ACTIVE)
    with pytest.raises(RuntimeError), database.session() as db:
        row = sessions.get_session(db, session_id)
        assert sessions.finalize(db, row, status=SessionStatus.ENDED, reason=EndReason.USER_LEFT)
        raise RuntimeError("the caller's transaction fails after the close")
    assert _deliveries(database, owner_id) == []
    with database.session() as db:
        assert sessions.get_session(db, session_id).status == SessionStatus.ACTIVE


def test_mark_active_enqueues_started_once_and_never_reopens_a_final_session(
    database: Database,
) -> None:
    owner_id, _ = _owner(database, (ALL, True))
    started = _session(database, owner_id, SessionStatus.STARTING)
    with database.session() as db:
        assert sessions.mark_active(db, sessions.get_session(db, started))
    with database.session() as db:
        assert not sessions.mark_active(db, sessions.get_session(db, started))
    closed = _session(database, owner_id, SessionStatus.STARTING)
    with database.session() as db:
        stale = sessions.get_session(db, closed)  # read while starting
        with database.session() as other:
            row = sessions.get_session(other, closed)
            sessions.finalize(other, row, status=SessionStatus.FAILED, reason=EndReason.ERROR)
        assert not sessions.mark_active(db, stale)
        assert stale.status == SessionStatus.FAILED
    rows = _deliveries(database, owner_id)
    assert sorted((r.event_type, r.subject_id) for r in rows) == sorted(
        [("session.started", started), ("session.ended", closed)]
    )


def test_only_a_failed_tool_call_enqueues_tool_failed(database: Database) -> None:
    owner_id, _ = _owner(database, (["tool.failed"], True))
    session_id = _session(database, owner_id, SessionStatus.ACTIVE)
    with database.session() as db:
        sessions.add_tool_call(db, session_id, name="ok", arguments={}, result="{}", error=None)
        failed = sessions.add_tool_call(
            db, session_id, name="boom", arguments={}, result=None, error="boom failed"
        )
        failed_id = str(failed.id)
    rows = _deliveries(database, owner_id)
    assert [(r.event_type, r.subject_id, r.session_id) for r in rows] == [
        ("tool.failed", failed_id, session_id)
    ]


def test_an_owner_without_endpoints_gets_no_rows(database: Database) -> None:
    owner_id, _ = _owner(database)
    session_id = _session(database, owner_id, SessionStatus.STARTING)
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        assert sessions.mark_active(db, row)
        sessions.add_tool_call(db, session_id, name="boom", arguments={}, error="x")
        assert sessions.finalize(db, row, status=SessionStatus.ENDED, reason=EndReason.USER_LEFT)
    assert _deliveries(database, owner_id) == []


def _due_now(database: Database) -> str:
    owner_id, (endpoint_id,) = _owner(database, (ALL, True))
    with database.session() as db:
        endpoint = webhooks.get_endpoint(db, endpoint_id, owner_id)
        return webhooks.enqueue_test(db, endpoint).id


def test_of_many_claimers_of_one_due_delivery_exactly_one_wins(database: Database) -> None:
    delivery_id = _due_now(database)
    ready = threading.Barrier(8, timeout=20)
    won: list[str] = []
    errors: list[BaseException] = []

    def claim(n: int) -> None:
        try:
            ready.wait()
            with database.writing() as db:
                got = webhooks.claim(db, delivery_id, f"p{n}", now=time.time(), hold=60)
            if got is not None:
                won.append(got.token)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(won) == 1, won
    with database.session() as db:
        row = db.get(WebhookDelivery, delivery_id)
        assert row is not None and row.attempts == 1 and row.claimed_by == won[0]


def test_an_expired_claim_is_taken_over_and_the_old_claimer_cannot_record(
    database: Database,
) -> None:
    delivery_id = _due_now(database)
    now = time.time()
    with database.writing() as db:
        first = webhooks.claim(db, delivery_id, "old", now=now, hold=1)
    assert first is not None
    with database.writing() as db:  # its claim still holds
        assert webhooks.claim(db, delivery_id, "new", now=now + 0.5, hold=60) is None
    with database.writing() as db:  # it ran out
        second = webhooks.claim(db, delivery_id, "new", now=now + 2, hold=60)
    assert second is not None and second.attempts == 2
    outcome = {
        "status": "delivered",
        "due_at": now,
        "status_code": 200,
        "error": None,
        "excerpt": "",
        "attempt_log": [],
    }
    with database.writing() as db:
        assert not webhooks.record(db, delivery_id, "old", **outcome)  # type: ignore[arg-type]
        assert webhooks.record(db, delivery_id, "new", **outcome)  # type: ignore[arg-type]
    with database.writing() as db:  # delivered: nobody claims it again
        assert webhooks.claim(db, delivery_id, "late", now=now + 100, hold=60) is None
