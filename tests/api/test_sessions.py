"""Sessions REST: list with filters and pages, detail with transcript, end closes the room."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from livekit import rtc
from tests.conftest import RunningApi, Tenant
from thinnest.livekit.rooms import LiveKitService
from thinnest.store import sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _start(tenant: Tenant, agent_id: str) -> dict[str, str]:
    resp = tenant.http.post("/voice/start", json={"agent_id": agent_id})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_list_paginates_and_filters(tenant: Tenant) -> None:
    a, b = tenant.create_agent(), tenant.create_agent()
    ids = [_start(tenant, a["id"])["session_id"] for _ in range(3)]
    other = _start(tenant, b["id"])["session_id"]

    page = tenant.http.get("/voice/sessions", params={"limit": 2}).json()
    assert page["total"] == 4
    assert len(page["data"]) == 2
    rest = tenant.http.get("/voice/sessions", params={"limit": 2, "offset": 2}).json()
    seen = [s["id"] for s in page["data"] + rest["data"]]
    assert sorted(seen) == sorted([*ids, other])
    assert seen[0] == other  # newest first

    only_a = tenant.http.get("/voice/sessions", params={"agent_id": a["id"]}).json()
    assert sorted(s["id"] for s in only_a["data"]) == sorted(ids)
    active = tenant.http.get("/voice/sessions", params={"status": "active"}).json()
    assert active["total"] == 4
    assert tenant.http.get("/voice/sessions", params={"status": "ended"}).json()["total"] == 0
    bad = tenant.http.get("/voice/sessions", params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "limit"
    assert tenant.http.get("/voice/sessions", params={"status": "nope"}).status_code == 422


def test_detail_includes_the_stored_transcript(tenant: Tenant, database: Database) -> None:
    agent = tenant.create_agent()
    sid = _start(tenant, agent["id"])["session_id"]
    with database.session() as db:
        sessions.add_turn(db, sid, role="agent", text="Hello!", latency={"tts_ttfb": 0.1})
        sessions.add_turn(db, sid, role="user", text="What time is it?")
        sessions.add_tool_call(
            db, sid, name="clock", arguments={"tz": "UTC"}, result='"12:00"', duration=0.05
        )
    detail = tenant.http.get(f"/voice/sessions/{sid}").json()
    assert [(t["seq"], t["role"], t["text"]) for t in detail["transcript"]] == [
        (1, "agent", "Hello!"),
        (2, "user", "What time is it?"),
    ]
    assert detail["transcript"][0]["latency"] == {"tts_ttfb": 0.1}
    assert detail["tool_calls"][0]["name"] == "clock"
    assert detail["tool_calls"][0]["arguments"] == {"tz": "UTC"}
    assert detail["status"] == "active"


async def test_end_closes_the_room_and_finalises_once(api: RunningApi, tenant: Tenant) -> None:
    agent = tenant.create_agent()
    started = _start(tenant, agent["id"])
    sid = started["session_id"]
    room = rtc.Room()
    left = asyncio.Event()
    room.on("disconnected", lambda *_: left.set())
    await room.connect(started["livekit_url"], started["token"])

    resp = await asyncio.to_thread(tenant.http.post, f"/voice/sessions/{sid}/end")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ended"
    assert resp.json()["end_reason"] == "ended_by_api"
    assert resp.json()["duration"] >= 0
    await asyncio.wait_for(left.wait(), 10)  # the client was disconnected by the room closing
    service = LiveKitService(api.settings)
    try:
        assert await service.list_participants(sid) == []
    except Exception:  # the room itself is gone: also closed
        pass
    finally:
        await service.aclose()

    again = await asyncio.to_thread(tenant.http.post, f"/voice/sessions/{sid}/end")
    assert again.status_code == 200
    assert again.json()["ended_at"] == resp.json()["ended_at"]


def test_owners_cannot_read_or_end_each_others_sessions(
    make_tenant: Callable[[], Tenant],
) -> None:
    alice, bob = make_tenant(), make_tenant()
    sid = _start(bob, bob.create_agent()["id"])["session_id"]
    assert alice.http.get("/voice/sessions").json()["total"] == 0
    for method, path in [("GET", f"/voice/sessions/{sid}"), ("POST", f"/voice/sessions/{sid}/end")]:
        resp = alice.http.request(method, path)
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "session_not_found"
    assert bob.http.get(f"/voice/sessions/{sid}").json()["status"] == "active"
