"""What ``session.ended`` carries, rendered from the real store: a very long call's body
stays under 1 MB by keeping its latest turns and says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from thinnest.config import Settings
from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.contracts.webhooks import SessionEnded
from thinnest.services.webhooks import MAX_BODY_BYTES, render
from thinnest.store import keys, sessions, webhooks
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _ended_delivery(database: Database, turns: list[str]) -> webhooks.Claimed:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, "render")
        webhooks.create_endpoint(
            db,
            owner.id,
            url="http://127.0.0.1:9/",
            events=["session.ended"],
            description="",
            enabled=True,
        )
        row = sessions.create_session(
            db,
            owner_id=owner.id,
            agent_id="agent_x",
            agent_config={},
            context={"k": 1},
            max_duration=60,
            status=SessionStatus.ACTIVE,
        )
        for i, text in enumerate(turns):
            sessions.add_turn(db, row.id, role="user" if i % 2 else "agent", text=text)
        assert sessions.finalize(db, row, status=SessionStatus.ENDED, reason=EndReason.USER_LEFT)
        ((delivery_id, _endpoint),) = webhooks.due(db, now=time.time() + 60, limit=10)
    with database.writing() as db:
        claimed = webhooks.claim(db, delivery_id, "t", now=time.time() + 60, hold=60)
    assert claimed is not None
    return claimed


def test_a_short_call_is_sent_whole(fresh_database: Database, tmp_path: Path) -> None:
    claimed = _ended_delivery(fresh_database, ["Hello!", "Hi."])
    body = render(fresh_database, claimed, Settings(data_dir=tmp_path))
    assert body is not None
    ended = SessionEnded.model_validate(json.loads(body)["data"])
    assert [t.text for t in ended.transcript] == ["Hello!", "Hi."]
    assert not ended.truncated and ended.context == {"k": 1}


def test_a_very_long_calls_body_keeps_its_latest_turns_under_1_mb(
    fresh_database: Database, tmp_path: Path
) -> None:
    turns = [f"{n:04d} " + "x" * 20_000 for n in range(100)]  # about 2 MB of text
    claimed = _ended_delivery(fresh_database, turns)
    body = render(fresh_database, claimed, Settings(data_dir=tmp_path))
    assert body is not None and len(body.encode()) <= MAX_BODY_BYTES
    ended = SessionEnded.model_validate(json.loads(body)["data"])
    assert ended.truncated
    kept = [t.seq for t in ended.transcript]
    assert kept and kept[-1] == 100 and kept == list(range(kept[0], 101))
    assert len(body.encode()) > MAX_BODY_BYTES / 4  # not cut further than needed
