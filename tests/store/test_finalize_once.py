"""A session is closed once, even by two processes at the same time: each reads it open,
one UPDATE wins and the other is told it was over (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.store import keys, sessions
from thinnest.store.db import Database


def _open_session(database: Database) -> str:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"finalize-{threading.get_ident()}")
        row = sessions.create_session(
            db,
            owner_id=owner.id,
            agent_id="agent_x",
            agent_config={},
            context={},
            max_duration=60,
            status=SessionStatus.ACTIVE,
        )
        return row.id


def test_two_closers_that_both_read_the_session_open_close_it_once(database: Database) -> None:
    session_id = _open_session(database)
    both_read = threading.Barrier(2, timeout=20)
    won: dict[str, bool] = {}
    errors: list[BaseException] = []

    def close(reason: EndReason) -> None:
        try:
            with database.session() as db:
                row = sessions.get_session(db, session_id)
                assert row.status == SessionStatus.ACTIVE
                both_read.wait()
                won[reason] = sessions.finalize(db, row, status=SessionStatus.ENDED, reason=reason)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=close, args=(reason,))
        for reason in (EndReason.USER_LEFT, EndReason.ENDED_BY_API)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(won.values()) == [False, True], won
    winner = next(reason for reason, w in won.items() if w)
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        assert (row.status, row.end_reason) == (SessionStatus.ENDED, winner)
        assert row.ended_at is not None


def test_a_session_already_over_is_left_as_it_was(database: Database) -> None:
    session_id = _open_session(database)
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        assert sessions.finalize(
            db, row, status=SessionStatus.ERROR, reason=EndReason.ERROR, error="x"
        )
        assert row.status == SessionStatus.ERROR and row.error == "x"
    with database.session() as db:
        row = sessions.get_session(db, session_id)
        assert not sessions.finalize(
            db, row, status=SessionStatus.ENDED, reason=EndReason.USER_LEFT
        )
        assert (row.status, row.end_reason) == (SessionStatus.ERROR, EndReason.ERROR)
