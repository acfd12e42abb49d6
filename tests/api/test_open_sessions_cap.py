"""A key's cap on its open sessions: a copied publishable key cannot hold every worker slot.

Counted and inserted in one transaction (the key's row locked), so concurrent starts never
exceed the cap; over it, ``429 too_many_sessions`` naming the field, with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest

from tests._cli import create_publishable_key, run_thinnest
from tests.conftest import RunningApi, Tenant, make_settings, start_api
from thinnest.config import Settings
from thinnest.contracts.agent import AgentConfig
from thinnest.contracts.session import OPEN_STATUSES, EndReason, SessionStatus
from thinnest.errors import ValidationError
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import agents, keys, sessions, workers
from thinnest.store.db import Database
from thinnest.store.models import ApiKey, CallSession, Owner

pytestmark = pytest.mark.integration

SITE = "https://shop.example"


def _publishable(tenant: Tenant, agent: str, **fields: object) -> dict[str, object]:
    body = {"kind": "publishable", "agents": [agent], "origins": [SITE], **fields}
    resp = tenant.http.post("/keys", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _start(api: RunningApi, key: str, agent: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Origin": SITE}
    with httpx.Client(base_url=api.url, timeout=30) as http:
        return http.post("/voice/start", json={"agent_id": agent}, headers=headers)


def _open_sessions(database: Database, key_id: str) -> int:
    with database.session() as db:
        return sessions.count_open(db, key_id)


def _assert_too_many(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["field"]) == ("too_many_sessions", "max_open_sessions")
    assert int(resp.headers["retry-after"]) >= 1
    assert "token" not in resp.json()


def test_a_publishable_key_over_its_cap_gets_429_until_one_ends(
    tenant: Tenant, api: RunningApi, database: Database
) -> None:
    agent = str(tenant.create_agent()["id"])
    created = _publishable(tenant, agent, max_open_sessions=3)
    assert created["max_open_sessions"] == 3
    key, key_id = str(created["key"]), str(created["id"])
    started = [_start(api, key, agent) for _ in range(3)]
    assert [r.status_code for r in started] == [200, 200, 200], started[-1].text
    with database.session() as db:  # each session records the key that started it
        for resp in started:
            assert sessions.get_session(db, resp.json()["session_id"]).api_key_id == key_id
    total = tenant.http.get("/voice/sessions").json()["total"]

    refused = _start(api, key, agent)
    _assert_too_many(refused)
    assert refused.headers["access-control-allow-origin"] == SITE  # the widget can say why
    assert tenant.http.get("/voice/sessions").json()["total"] == total  # nothing stored
    assert _open_sessions(database, key_id) == 3

    # The owner ends one (secret key): there is room for one more, and only one.
    ended = tenant.http.post(f"/voice/sessions/{started[0].json()['session_id']}/end")
    assert ended.status_code == 200, ended.text
    assert _start(api, key, agent).status_code == 200
    _assert_too_many(_start(api, key, agent))
    # The owner's secret key is not held back by its publishable key's sessions.
    assert tenant.http.post("/voice/start", json={"agent_id": agent}).status_code == 200


def test_a_publishable_key_without_its_own_cap_takes_the_servers(
    tenant: Tenant, api: RunningApi
) -> None:
    default = api.settings.publishable_max_open_sessions
    assert default == Settings.model_fields["publishable_max_open_sessions"].default == 2
    agent = str(tenant.create_agent()["id"])
    created = _publishable(tenant, agent)
    assert created["max_open_sessions"] is None
    codes = [_start(api, str(created["key"]), agent).status_code for _ in range(default)]
    assert codes == [200] * default
    _assert_too_many(_start(api, str(created["key"]), agent))


async def test_concurrent_starts_never_exceed_the_cap(
    tenant: Tenant, api: RunningApi, database: Database
) -> None:
    cap, tries = 3, 12
    agent = str(tenant.create_agent()["id"])
    created = _publishable(tenant, agent, max_open_sessions=cap, rate_limit_per_minute=1000)
    headers = {"Authorization": f"Bearer {created['key']}", "Origin": SITE}
    async with httpx.AsyncClient(base_url=api.url, timeout=60, headers=headers) as http:
        for _round in range(2):  # the second round starts with the cap already reached
            answers = await asyncio.gather(
                *(http.post("/voice/start", json={"agent_id": agent}) for _ in range(tries))
            )
            codes = sorted(r.status_code for r in answers)
            assert all(c in (200, 429) for c in codes), [r.text for r in answers]
            for resp in answers:
                if resp.status_code == 429:
                    _assert_too_many(resp)
            assert _open_sessions(database, str(created["id"])) == cap
            expected = [200] * cap + [429] * (tries - cap) if _round == 0 else [429] * tries
            assert codes == expected


def test_a_secret_key_has_no_cap_unless_it_sets_one(
    tenant: Tenant, api: RunningApi, database: Database
) -> None:
    agent = str(tenant.create_agent()["id"])
    uncapped = api.settings.publishable_max_open_sessions + 2
    for _ in range(uncapped):
        assert tenant.http.post("/voice/start", json={"agent_id": agent}).status_code == 200

    created = tenant.http.post("/keys", json={"name": "server", "max_open_sessions": 1})
    assert created.status_code == 201, created.text
    assert created.json()["max_open_sessions"] == 1
    listed = {k["id"]: k for k in tenant.http.get("/keys").json()}
    assert listed[created.json()["id"]]["max_open_sessions"] == 1
    with api.client(created.json()["key"]) as http:
        first = http.post("/voice/start", json={"agent_id": agent})
        assert first.status_code == 200, first.text
        _assert_too_many(http.post("/voice/start", json={"agent_id": agent}))
        assert http.post(f"/voice/sessions/{first.json()['session_id']}/end").status_code == 200
        assert http.post("/voice/start", json={"agent_id": agent}).status_code == 200


@pytest.mark.parametrize("kind", ["secret", "publishable"])
@pytest.mark.parametrize("value", [0, -1, "2", 1.5, 100001])
def test_creation_refuses_a_bad_cap(tenant: Tenant, kind: str, value: object) -> None:
    agent = str(tenant.create_agent()["id"])
    body: dict[str, object] = {"kind": kind, "max_open_sessions": value}
    if kind == "publishable":
        body |= {"agents": [agent], "origins": [SITE]}
    resp = tenant.http.post("/keys", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == "max_open_sessions"


def test_the_store_refuses_a_bad_cap(database: Database) -> None:
    with database.session() as db:
        owner = keys.get_or_create_owner(db, "cap-store-owner")
        with pytest.raises(ValidationError) as info:
            keys.create_key(db, owner, max_open_sessions=0)
        assert info.value.field == "max_open_sessions"


def test_sessions_that_end_free_the_slot_whatever_ends_them(
    tenant: Tenant, api: RunningApi, database: Database
) -> None:
    """Only starting and active sessions count: one the engine ended (a no-show) frees its
    slot as an API end does."""
    agent = str(tenant.create_agent()["id"])
    created = _publishable(tenant, agent, max_open_sessions=1)
    first = _start(api, str(created["key"]), agent)
    assert first.status_code == 200
    _assert_too_many(_start(api, str(created["key"]), agent))
    with database.session() as db:
        row = sessions.get_session(db, first.json()["session_id"])
        assert row.status in OPEN_STATUSES
        sessions.finalize(db, row, status=SessionStatus.ENDED, reason=EndReason.NO_SHOW)
    assert _start(api, str(created["key"]), agent).status_code == 200


def test_cli_creates_keys_with_a_cap(tmp_path: Path) -> None:
    publishable = create_publishable_key(tmp_path, SITE, "--max-open-sessions", "5")
    assert publishable.returncode == 0, publishable.stderr
    secret = run_thinnest(tmp_path, "keys", "create", "--owner", "acme", "--max-open-sessions", "7")
    assert secret.returncode == 0, secret.stderr
    bad = run_thinnest(tmp_path, "keys", "create", "--owner", "acme", "--max-open-sessions", "0")
    assert bad.returncode != 0 and "max_open_sessions" in bad.stderr.replace("-", "_")
    settings = Settings(data_dir=tmp_path)  # type: ignore[call-arg]
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as s:
            made = {
                k.kind: k.max_open_sessions
                for k in s.query(ApiKey).where(ApiKey.owner.has(Owner.name == "acme"))
            }
            assert s.query(CallSession).count() == 0
    finally:
        db.close()
    assert made == {"publishable": 5, "secret": 7}


async def test_concurrent_starts_with_different_keys_never_overfill_a_worker(
    fresh_database: Database, livekit_server: LiveKitDevServer, tmp_path: Path
) -> None:
    """The capacity check runs in the start's transaction with the workers' rows locked: ten
    starts at once, each with its own key, for a worker with three free slots."""
    slots, tries = 3, 10
    pool = f"pool-{secrets.token_hex(3)}"
    with fresh_database.session() as db:
        owner = keys.get_or_create_owner(db, "capacity")
        agent = agents.create_agent(db, owner.id, AgentConfig(name="a")).id
        plaintexts = [keys.create_key(db, owner)[1] for _ in range(tries)]
        # The row a `thinnest worker` of this pool writes when it has `slots` free slots.
        workers.heartbeat(db, f"{pool}-w", agent_name=pool, max_jobs=slots, active_jobs=0)
    settings = make_settings(
        tmp_path, livekit_server, require_worker=True, agent_name=pool, rate_limit_per_minute=1000
    )
    api = start_api(settings, fresh_database)
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/voice/start",
                        json={"agent_id": agent},
                        headers={"Authorization": f"Bearer {p}"},
                    )
                    for p in plaintexts
                )
            )
    finally:
        api.stop()
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * slots + [503] * (tries - slots), [r.text for r in answers]
    refused = [r for r in answers if r.status_code == 503]
    assert {r.json()["error"]["code"] for r in refused} == {"no_capacity"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
