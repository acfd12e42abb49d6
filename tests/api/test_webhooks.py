"""Webhooks against a real local receiver: managed through /webhooks, signed (the documented
snippet verifies them), retried on 500 and on a timeout with the same id and body, never sent
again after a success, sent once across several API processes, refused by the SSRF guard, and
never in the way of a call: a receiver that hangs delays no start or end.

Each API here runs with fast webhook settings on a fresh database of the suite's kind, with a
``Database`` of its own: the APIs share only the database, as processes do."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApi, free_port, make_settings, start_api
from tests.services.test_webhooks import documented_verify
from tests.webhook_receiver import Receiver
from thinnest.contracts.webhooks import Envelope, SessionEnded, SessionStarted, ToolFailed
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import keys, sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

FAST: dict[str, object] = {
    "webhook_poll_interval": 0.05,
    "webhook_retry_base": 0.2,
    "webhook_retry_window": 3.0,
    "webhook_timeout": 1.0,
}

MakeApi = Callable[..., RunningApi]


@pytest.fixture
def make_api(fresh_database: Database, tmp_path: Path) -> Iterator[MakeApi]:
    """Start an API on the fresh database: ``make_api(livekit=None, **settings)``."""
    started: list[tuple[RunningApi, Database]] = []

    def make(livekit: LiveKitDevServer | None = None, **overrides: object) -> RunningApi:
        fields = {**FAST, **overrides}
        if livekit is None:  # LiveKit unreachable: webhooks and their routes need none
            fields.update(
                livekit_url=f"http://127.0.0.1:{free_port()}",
                livekit_api_key="APIx",
                livekit_api_secret="s" * 40,
                livekit_timeout=1.0,
            )
        own = Database(fresh_database.url)
        running = start_api(
            make_settings(tmp_path / f"api-{secrets.token_hex(3)}", livekit, **fields), own
        )
        started.append((running, own))
        return running

    yield make
    for running, own in started:
        running.stop()
        own.close()


def _key(database: Database) -> str:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, f"hooks-{secrets.token_hex(4)}")
        return keys.create_key(db, owner)[1]


def _create(http: httpx.Client, url: str, **fields: object) -> dict[str, Any]:
    resp = http.post("/webhooks", json={"url": url, **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _settled(
    http: httpx.Client, webhook_id: str, n: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The endpoint's deliveries once ``n`` of them are no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        page = http.get(f"/webhooks/{webhook_id}/deliveries", params={"limit": 100}).json()
        done = [d for d in page["data"] if d["status"] != "pending"]
        if len(done) >= n:
            return list(page["data"])
        assert time.monotonic() < deadline, page
        time.sleep(0.05)


def _test_event(http: httpx.Client, webhook_id: str) -> dict[str, Any]:
    resp = http.post(f"/webhooks/{webhook_id}/test")
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def test_webhooks_are_owner_scoped_and_the_secret_is_shown_once(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    with api.client(_key(fresh_database)) as alice, api.client(_key(fresh_database)) as mallory:
        created = _create(alice, "http://127.0.0.1:9/a", description="mine")
        assert created["secret"].startswith("whsec_")
        assert created["secret_prefix"] == created["secret"][:10]
        assert created["events"] == ["session.started", "session.ended", "tool.failed"]
        wid = created["id"]
        listed = alice.get("/webhooks").json()
        assert [w["id"] for w in listed] == [wid]
        assert all("secret" not in w for w in listed)
        assert "secret" not in alice.get(f"/webhooks/{wid}").json()
        assert mallory.get("/webhooks").json() == []
        for method, path in [
            ("GET", f"/webhooks/{wid}"),
            ("PATCH", f"/webhooks/{wid}"),
            ("DELETE", f"/webhooks/{wid}"),
            ("POST", f"/webhooks/{wid}/test"),
            ("GET", f"/webhooks/{wid}/deliveries"),
        ]:
            resp = mallory.request(method, path, json={} if method == "PATCH" else None)
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json()["error"]["code"] == "webhook_not_found"
        patched = alice.patch(f"/webhooks/{wid}", json={"events": ["tool.failed"]}).json()
        assert patched["events"] == ["tool.failed"] and "secret" not in patched
        bad = alice.patch(f"/webhooks/{wid}", json={"events": ["session.exploded"]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "events.0"
        assert alice.delete(f"/webhooks/{wid}").status_code == 204
        assert alice.get(f"/webhooks/{wid}").status_code == 404


def test_create_refuses_credentials_in_the_url_and_warns_about_a_refused_address(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api(tools_allow_loopback=False)
    with api.client(_key(fresh_database)) as http:
        resp = http.post("/webhooks", json={"url": "https://user:pw@example.com/hook"})
        assert resp.status_code == 422
        assert resp.json()["error"]["field"] == "url"
        assert "credentials" in resp.json()["error"]["message"]
        resp = http.post("/webhooks", json={"url": "ftp://example.com/hook"})
        assert resp.status_code == 422 and resp.json()["error"]["field"] == "url"
        long_host = ".".join(["ü" * 20] * 12)  # 251 characters; its ASCII spelling is longer
        resp = http.post("/webhooks", json={"url": f"https://{long_host}/" + "p" * 1700})
        assert resp.status_code == 422 and resp.json()["error"]["field"] == "url", resp.text
        warned = _create(http, "http://127.0.0.1:9/hook")
        assert len(warned["warnings"]) == 1 and "127.0.0.1" in warned["warnings"][0]
        assert _create(http, "https://example.com/hook")["warnings"] == []


def test_a_test_event_arrives_once_signed_and_verifies(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    verify = documented_verify()
    with Receiver() as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        queued = _test_event(http, hook["id"])
        (got,) = receiver.wait_for(1)
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-id"] == queued["id"] == got.json()["id"]
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
        assert got.headers["webhook-signature"].startswith("v1,")
        assert verify(hook["secret"], got.headers, got.body)
        assert not verify(hook["secret"], got.headers, got.body.replace(b"test", b"tost"))
        envelope = Envelope.model_validate_json(got.body)
        assert envelope.type == "webhook.test"
        assert envelope.data["webhook_id"] == hook["id"]
        (delivery,) = _settled(http, hook["id"])
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
        time.sleep(0.5)  # ten poll intervals
        assert len(receiver.requests) == 1


def test_retries_on_500_with_the_same_id_and_body_then_stops(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    verify = documented_verify()
    with Receiver([500, 500]) as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        _test_event(http, hook["id"])
        first, second, third = receiver.wait_for(3)
        assert {r.headers["webhook-id"] for r in (first, second, third)} == {
            first.headers["webhook-id"]
        }
        assert first.body == second.body == third.body
        assert all(verify(hook["secret"], r.headers, r.body) for r in (first, second, third))
        # backoff: 0.2 s, then four times that (±10 %)
        # (upper bounds wide: a loaded machine delays a send, never hastens it)
        assert 0.17 <= second.at - first.at < 4.0
        assert 0.7 <= third.at - second.at < 6.0
        (delivery,) = _settled(http, hook["id"])
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
        time.sleep(1.5)  # well past the next retry's time, had there been one
        assert len(receiver.requests) == 3  # no duplicate after the success
        detail = http.get(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}").json()
        assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 200]
        assert [a["error"] for a in detail["attempt_log"]] == ["HTTP 500", "HTTP 500", None]
        assert detail["last_status_code"] == 200 and detail["last_error"] is None
        assert detail["payload"]["id"] == delivery["id"]
        assert detail["response_excerpt"] == '{"ok": true}'
        assert detail["next_attempt_at"] is None and detail["delivered_at"] is not None


def test_retries_after_the_receiver_times_out(make_api: MakeApi, fresh_database: Database) -> None:
    api = make_api()
    with Receiver([("hang", 3.0)]) as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        _test_event(http, hook["id"])
        first, second = receiver.wait_for(2)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert 1.1 <= second.at - first.at < 6.0  # the 1 s timeout, then the 0.2 s backoff
        (delivery,) = _settled(http, hook["id"])
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
        detail = http.get(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}").json()
        assert detail["attempt_log"][0]["error"] == "timeout"
        assert detail["attempt_log"][0]["status_code"] is None
        assert detail["attempt_log"][0]["seconds"] >= 0.9


def test_gives_up_when_the_retry_window_is_over(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    with Receiver(default=500) as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        _test_event(http, hook["id"])
        (delivery,) = _settled(http, hook["id"])
        # attempts at 0, 0.2 and 1.0 s; the next (+3.2 s) would be past the 3 s window
        assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
        assert delivery["last_error"] == "HTTP 500" and delivery["last_status_code"] == 500
        time.sleep(1.0)
        assert len(receiver.requests) == 3
        failed = http.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "failed"})
        assert failed.json()["total"] == 1
        assert (
            http.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "delivered"}).json()[
                "data"
            ]
            == []
        )


def test_a_receiver_on_a_refused_address_gets_nothing(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api(tools_allow_loopback=False)
    with Receiver() as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        assert hook["warnings"]
        _test_event(http, hook["id"])
        (delivery,) = _settled(http, hook["id"])
        assert (delivery["status"], delivery["attempts"]) == ("failed", 1)  # not retried
        assert "127.0.0.1 is not public" in delivery["last_error"]
        time.sleep(0.5)
        assert receiver.requests == []


def test_deliveries_go_out_once_across_api_processes(
    make_api: MakeApi, fresh_database: Database
) -> None:
    apis = [make_api(webhook_retry_window=60.0) for _ in range(3)]
    key = _key(fresh_database)
    clients = [a.client(key) for a in apis]
    try:
        with Receiver(default=("hang", 0.02)) as receiver:
            hook = _create(clients[0], receiver.url)
            queued = [_test_event(clients[i % 3], hook["id"])["id"] for i in range(60)]
            rows = _settled(clients[1], hook["id"], n=60, timeout=60)
            time.sleep(0.5)
            ids = [r.headers["webhook-id"] for r in receiver.requests]
            assert len(ids) == 60 and sorted(set(ids)) == sorted(queued)
            assert all((r["status"], r["attempts"]) == ("delivered", 1) for r in rows), rows
    finally:
        for c in clients:
            c.close()


def _start(http: httpx.Client, agent_id: str) -> str:
    resp = http.post("/voice/start", json={"agent_id": agent_id})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["session_id"])


def test_session_events_carry_the_documented_payload(
    make_api: MakeApi, fresh_database: Database, livekit_server: LiveKitDevServer
) -> None:
    api = make_api(livekit_server)
    with Receiver() as receiver, api.client(_key(fresh_database)) as http:
        _create(http, receiver.url)
        agent = http.post("/agents", json={"name": "hooked"}).json()
        sid = _start(http, agent["id"])
        with fresh_database.session() as db:  # what the engine writes during a call
            sessions.add_turn(db, sid, role="agent", text="Hi!", latency={"tts_ttfb": 0.2})
            sessions.add_turn(
                db, sid, role="user", text="Weather?", latency={"stt": 0.1, "voice_to_voice": 0.9}
            )
            sessions.add_tool_call(
                db, sid, name="weather", arguments={"city": "Oslo"}, error="weather timed out"
            )
        assert http.post(f"/voice/sessions/{sid}/end").status_code == 200
        received = receiver.wait_for(3)
        by_type = {Envelope.model_validate_json(r.body).type: r.json() for r in received}
        assert set(by_type) == {"session.started", "tool.failed", "session.ended"}
        started = SessionStarted.model_validate(by_type["session.started"]["data"])
        assert (started.session_id, started.agent_id, started.status) == (
            sid,
            agent["id"],
            "active",
        )
        failed = ToolFailed.model_validate(by_type["tool.failed"]["data"])
        assert (failed.name, failed.error, failed.arguments) == (
            "weather",
            "weather timed out",
            {"city": "Oslo"},
        )
        ended = SessionEnded.model_validate(by_type["session.ended"]["data"])
        assert (ended.status, ended.end_reason) == ("ended", "ended_by_api")
        assert ended.duration is not None and ended.duration >= 0
        assert [(t.role, t.text) for t in ended.transcript] == [
            ("agent", "Hi!"),
            ("user", "Weather?"),
        ]
        assert [(c.name, c.error) for c in ended.tool_calls] == [("weather", "weather timed out")]
        assert set(ended.latency) == {"tts_ttfb", "stt", "voice_to_voice"}
        assert ended.latency["voice_to_voice"].max == 0.9
        assert ended.recording_url is None
        time.sleep(0.5)
        assert len(receiver.requests) == 3


def test_a_slow_receiver_never_delays_starting_or_ending_a_session(
    make_api: MakeApi, fresh_database: Database, livekit_server: LiveKitDevServer
) -> None:
    api = make_api(
        livekit_server, webhook_timeout=5.0, webhook_concurrency=2, webhook_retry_window=120.0
    )
    with Receiver(default=("hang", 30.0)) as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url, events=["session.started", "session.ended"])
        agent = http.post("/agents", json={"name": "slow-hooks"}).json()
        starts, ends, health = [], [], []
        for _ in range(6):
            t0 = time.monotonic()
            sid = _start(http, agent["id"])
            starts.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert http.post(f"/voice/sessions/{sid}/end").status_code == 200
            ends.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert http.get("/healthz").status_code == 200
            health.append(time.monotonic() - t0)
        deadline = time.monotonic() + 10
        while receiver.in_flight == 0:  # the sends hang meanwhile
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        assert http.get("/healthz").status_code == 200
        health.append(time.monotonic() - t0)
        # Each well under the 5 s send timeout and the 30 s hang (wide for a loaded machine).
        assert max(starts) < 4.0, starts
        assert max(ends) < 4.0, ends
        assert max(health) < 2.0, health
        assert receiver.most_in_flight <= 2  # webhook_concurrency
        receiver.release.set()  # the receiver answers now
        rows = _settled(http, hook["id"], n=12, timeout=60)
        assert len(rows) == 12 and all(r["status"] == "delivered" for r in rows), rows


def test_an_api_that_does_not_send_queues_for_one_that_does(
    make_api: MakeApi, fresh_database: Database
) -> None:
    """``webhook_send`` off: the process queues events and sends none; another API process on
    the same database sends them."""
    quiet = make_api(webhook_send=False)
    with Receiver() as receiver, quiet.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        queued = _test_event(http, hook["id"])
        time.sleep(1.0)  # twenty poll intervals
        assert receiver.requests == []
        make_api()  # a sending process on the same database
        (got,) = receiver.wait_for(1)
        assert got.headers["webhook-id"] == queued["id"]


def test_a_rotated_secret_signs_beside_the_new_one_for_its_grace_period(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    verify = documented_verify()
    with Receiver() as receiver, api.client(_key(fresh_database)) as http:
        hook = _create(http, receiver.url)
        old = hook["secret"]
        rotated = http.post(f"/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": 1})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old
        assert rotated.json()["secret_prefix"] == new[:10]
        _test_event(http, hook["id"])
        (during,) = receiver.wait_for(1)
        assert len(during.headers["webhook-signature"].split()) == 2
        assert verify(new, during.headers, during.body)
        assert verify(old, during.headers, during.body)  # a receiver not yet switched

        # No grace: only the newest secret signs from now on.
        now = http.post(f"/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": 0})
        newest = now.json()["secret"]
        _test_event(http, hook["id"])
        _, after = receiver.wait_for(2)
        assert len(after.headers["webhook-signature"].split()) == 1
        assert verify(newest, after.headers, after.body)
        assert not verify(new, after.headers, after.body)
        assert not verify(old, after.headers, after.body)
        bad = http.post(f"/webhooks/{hook['id']}/rotate-secret", json={"grace_hours": 500})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "grace_hours"
        assert http.get(f"/webhooks/{hook['id']}").json()["secret_prefix"] == newest[:10]


def test_a_failed_delivery_is_resent_on_request_with_the_same_id(
    make_api: MakeApi, fresh_database: Database
) -> None:
    api = make_api()
    with (
        Receiver(default=500) as receiver,
        api.client(_key(fresh_database)) as http,
        api.client(_key(fresh_database)) as stranger,
    ):
        hook = _create(http, receiver.url)
        _test_event(http, hook["id"])
        (failed,) = _settled(http, hook["id"])
        assert (failed["status"], failed["attempts"]) == ("failed", 3)
        path = f"/webhooks/{hook['id']}/deliveries/{failed['id']}/resend"
        assert stranger.post(path).status_code == 404  # another owner's delivery
        missing = http.post(f"/webhooks/{hook['id']}/deliveries/msg_nope/resend")
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "delivery_id"
        receiver.default = 200  # the receiver is back
        resent = http.post(path)
        assert resent.status_code == 202, resent.text
        assert resent.json()["status"] == "pending"
        requests = receiver.wait_for(4)
        assert {r.headers["webhook-id"] for r in requests} == {failed["id"]}
        assert requests[-1].body == requests[0].body
        (delivered,) = _settled(http, hook["id"])
        assert (delivered["status"], delivered["attempts"]) == ("delivered", 4)
        time.sleep(0.5)
        assert len(receiver.requests) == 4  # once, not again
