"""POST /voice/start against a real LiveKit server: the contract, the token, and bad input."""

from __future__ import annotations

import asyncio
import base64
import json

import jwt
import pytest

from livekit import api as lkapi
from livekit import rtc
from tests.conftest import RunningApi, Tenant, make_settings, start_api
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.livekit.rooms import LiveKitService
from thinnest.store import sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


def _claims(token: str, secret: str) -> dict[str, object]:
    return dict(jwt.decode(token, secret, algorithms=["HS256"]))


async def test_start_returns_the_contract_and_the_client_joins_the_room(
    api: RunningApi, tenant: Tenant, livekit_server: LiveKitDevServer, database: Database
) -> None:
    agent = tenant.create_agent(greeting="Hi there", recording=True, max_duration=120)
    resp = tenant.http.post(
        "/voice/start", json={"agent_id": agent["id"], "context": {"user": "Ada", "plan": "pro"}}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"session_id", "token", "websocket_url", "livekit_url"}
    sid = body["session_id"]
    assert sid.startswith("session_")
    assert body["websocket_url"] == f"ws://127.0.0.1:{api.settings.api_port}/ws/{sid}"
    assert body["livekit_url"] == livekit_server.options.url.replace("http://", "ws://")

    header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    claims = _claims(body["token"], livekit_server.options.api_secret)
    assert claims["exp"] - claims["iat"] == 600  # type: ignore[operator]
    video = claims["video"]
    assert video == {
        "roomJoin": True,
        "room": sid,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
        # "unknown": a track published without options (the documented snippets).
        "canPublishSources": ["microphone", "unknown"],
        "canUpdateOwnMetadata": False,
    }

    service = LiveKitService(api.settings)
    room = rtc.Room()
    try:
        await room.connect(body["livekit_url"], body["token"])
        assert room.name == sid
        participants = await service.list_participants(sid)
        assert [p.identity for p in participants] == ["user"]
        dispatches = [d for d in await service.list_dispatches(sid) if d.agent_name]
        assert [d.agent_name for d in dispatches] == ["thinnest"]
        meta = json.loads(dispatches[0].metadata)
        assert meta["session_id"] == sid
        assert meta["agent_id"] == agent["id"]
        assert meta["agent"]["greeting"] == "Hi there"
        assert meta["context"] == {"user": "Ada", "plan": "pro"}
        assert meta["recording"] is True
        assert meta["max_duration"] == 120
    finally:
        await room.disconnect()
        await service.delete_room(sid)
        await service.aclose()

    with database.session() as db:
        row = sessions.get_session(db, sid)
        assert row.status == "active"
        assert row.context == {"user": "Ada", "plan": "pro"}


async def test_request_values_override_the_agent_defaults(
    api: RunningApi, tenant: Tenant, livekit_server: LiveKitDevServer
) -> None:
    agent = tenant.create_agent(recording=True, max_duration=300)
    resp = tenant.http.post(
        "/voice/start", json={"agent_id": agent["name"], "recording": False, "max_duration": 30}
    )
    assert resp.status_code == 200, resp.text
    detail = tenant.http.get(f"/voice/sessions/{resp.json()['session_id']}").json()
    assert detail["recording"] is False
    assert detail["max_duration"] == 30
    assert detail["agent_id"] == agent["id"]


async def test_token_cannot_enter_another_room_or_administer_rooms(
    api: RunningApi, tenant: Tenant, livekit_server: LiveKitDevServer
) -> None:
    agent = tenant.create_agent()
    first = tenant.http.post("/voice/start", json={"agent_id": agent["id"]}).json()
    second = tenant.http.post("/voice/start", json={"agent_id": agent["id"]}).json()
    url = livekit_server.options.url

    # Re-pointing the token at the other session's room breaks its signature.
    head, payload, sig = first["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["video"]["room"] = second["session_id"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(rtc.ConnectError):
        await rtc.Room().connect(first["livekit_url"], f"{head}.{forged_payload}.{sig}")

    # The token grants no room administration: listing, deleting, dispatching all fail.
    client = lkapi.LiveKitAPI(url, token=first["token"])
    try:
        with pytest.raises(lkapi.TwirpError):
            await client.room.list_rooms(lkapi.ListRoomsRequest())
        with pytest.raises(lkapi.TwirpError):
            await client.room.delete_room(lkapi.DeleteRoomRequest(room=first["session_id"]))
        with pytest.raises(lkapi.TwirpError):
            await client.room.delete_room(lkapi.DeleteRoomRequest(room=second["session_id"]))
        with pytest.raises(lkapi.TwirpError):
            await client.agent_dispatch.create_dispatch(
                lkapi.CreateAgentDispatchRequest(agent_name="thinnest", room=second["session_id"])
            )
    finally:
        await client.aclose()


async def test_expired_token_is_refused_by_livekit(
    api: RunningApi, livekit_server: LiveKitDevServer
) -> None:
    from thinnest.livekit.tokens import mint_participant_token

    opts = livekit_server.options
    token = mint_participant_token(
        api_key=opts.api_key,
        api_secret=opts.api_secret,
        room="session_expired",
        identity="user",
        now=__import__("time").time() - 3600,
    )
    with pytest.raises(rtc.ConnectError):
        await asyncio.wait_for(rtc.Room().connect(opts.url.replace("http", "ws"), token), 20)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_api_key", id="no-header"),
        pytest.param({"Authorization": "Basic abc"}, "missing_api_key", id="not-bearer"),
        pytest.param({"Authorization": "Bearer"}, "missing_api_key", id="empty-bearer"),
        pytest.param({"Authorization": "Bearer nope"}, "invalid_api_key", id="malformed"),
        pytest.param(
            {"Authorization": "Bearer tn_sk_" + "A" * 43}, "invalid_api_key", id="unknown"
        ),
    ],
)
def test_bad_keys_get_401(api: RunningApi, headers: dict[str, str], code: str) -> None:
    with api.client() as http:
        resp = http.post("/voice/start", json={"agent_id": "x"}, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == code


def test_revoked_key_gets_401(api: RunningApi, tenant: Tenant) -> None:
    agent = tenant.create_agent()
    key_id = tenant.http.get("/keys").json()[0]["id"]
    assert tenant.http.delete(f"/keys/{key_id}").status_code == 200
    resp = tenant.http.post("/voice/start", json={"agent_id": agent["id"]})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "revoked_api_key"


def test_unknown_and_foreign_agents_are_the_same_404(api: RunningApi, make_tenant: object) -> None:
    alice, bob = make_tenant(), make_tenant()  # type: ignore[operator]
    bobs = bob.create_agent()
    fake = "agent_" + "0" * 24
    foreign = alice.http.post("/voice/start", json={"agent_id": bobs["id"]})
    unknown = alice.http.post("/voice/start", json={"agent_id": fake})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"] == {
        **unknown.json()["error"],
        "message": unknown.json()["error"]["message"].replace(fake, bobs["id"]),
    }
    assert foreign.json()["error"]["field"] == "agent_id"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "agent_id", id="missing-agent_id"),
        pytest.param({"agent_id": 123}, "agent_id", id="agent_id-not-string"),
        pytest.param({"agent_id": ""}, "agent_id", id="agent_id-empty"),
        pytest.param({"agent_id": "AG", "max_duration": 0}, "max_duration", id="max_duration-0"),
        pytest.param({"agent_id": "AG", "max_duration": -5}, "max_duration", id="negative"),
        pytest.param({"agent_id": "AG", "max_duration": 99999}, "max_duration", id="over-max"),
        pytest.param({"agent_id": "AG", "max_duration": "30"}, "max_duration", id="string"),
        pytest.param({"agent_id": "AG", "max_duration": 1.5}, "max_duration", id="float"),
        pytest.param({"agent_id": "AG", "context": [1, 2]}, "context", id="context-list"),
        pytest.param({"agent_id": "AG", "context": "hi"}, "context", id="context-string"),
        pytest.param(
            {"agent_id": "AG", "context": {"x": "y" * 20000}}, "context", id="context-too-big"
        ),
        pytest.param({"agent_id": "AG", "recording": "yes"}, "recording", id="recording-str"),
        pytest.param({"agent_id": "AG", "surprise": 1}, "surprise", id="unknown-field"),
        pytest.param([1, 2], "body", id="body-array"),
    ],
)
def test_invalid_bodies_get_422_naming_the_field(
    api: RunningApi, tenant: Tenant, body: object, field: str
) -> None:
    agent = tenant.create_agent()
    if isinstance(body, dict) and body.get("agent_id") == "AG":
        body["agent_id"] = agent["id"]
    resp = tenant.http.post("/voice/start", json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["field"] == field
    assert error["code"] == "invalid_request"
    assert error["message"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        pytest.param(b"{not json", "invalid_request", id="not-json"),
        pytest.param(b"", "invalid_request", id="empty"),
        pytest.param(b'{"agent_id": "' + b"a" * 100_000 + b'"}', "body_too_large", id="oversized"),
    ],
)
def test_unparseable_bodies_get_422_on_body(
    api: RunningApi, tenant: Tenant, content: bytes, code: str
) -> None:
    resp = tenant.http.post(
        "/voice/start", content=content, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == "body"
    assert resp.json()["error"]["code"] == code


def test_livekit_down_gives_503_and_no_active_session(
    database: Database, tmp_path: object, make_tenant: object
) -> None:
    from tests.conftest import free_port

    settings = make_settings(
        tmp_path,
        None,
        livekit_url=f"http://127.0.0.1:{free_port()}",  # type: ignore[arg-type]
        livekit_api_key="APIx",
        livekit_api_secret="s" * 40,
        livekit_timeout=2.0,
        rate_limit_per_minute=3,
    )
    down = start_api(settings, database)
    try:
        tenant = make_tenant()  # type: ignore[operator]
        agent = tenant.create_agent()
        with down.client(tenant.key) as http:
            resp = http.post("/voice/start", json={"agent_id": agent["id"]})
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "livekit_unavailable"
            assert "LiveKit" in resp.json()["error"]["message"]
            assert http.get("/readyz").status_code == 503
            # The rate limit (3/min here) answers 429 with Retry-After once spent.
            statuses = [
                http.post("/voice/start", json={"agent_id": agent["id"]}).status_code
                for _ in range(3)
            ]
            assert statuses == [503, 503, 429]
            limited = http.post("/voice/start", json={"agent_id": agent["id"]})
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["error"]["code"] == "rate_limited"
        page = tenant.http.get("/voice/sessions", params={"agent_id": agent["id"]}).json()
        assert page["total"] == 3
        assert {s["status"] for s in page["data"]} == {"failed"}
        assert {s["end_reason"] for s in page["data"]} == {"livekit_unavailable"}
    finally:
        down.stop()


def test_no_live_worker_gives_503(
    database: Database, tmp_path: object, livekit_server: LiveKitDevServer, make_tenant: object
) -> None:
    settings = make_settings(
        tmp_path,
        livekit_server,
        agent_name="nobody-serves-this",  # type: ignore[arg-type]
        require_worker=True,
    )
    side = start_api(settings, database)
    try:
        tenant = make_tenant()  # type: ignore[operator]
        agent = tenant.create_agent()
        with side.client(tenant.key) as http:
            resp = http.post("/voice/start", json={"agent_id": agent["id"]})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "no_worker"
        assert "thinnest worker" in resp.json()["error"]["message"]
        # Refused before anything was stored or created.
        assert tenant.http.get("/voice/sessions").json()["total"] == 0
    finally:
        side.stop()
