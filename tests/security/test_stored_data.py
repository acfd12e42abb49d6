"""No input causes a 5xx or breaks stored data: a lone surrogate (``"\\ud800"``) or deep nesting
in any free-form JSON is refused with 422 naming the field, and rows an older version stored
with them are still served (repaired), by the API and to the voice engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, update

from tests.conftest import RunningApi, Tenant
from tests.security.conftest import new_owner
from thinnest.contracts import jsonvalue
from thinnest.contracts.dispatch import DispatchMetadata
from thinnest.store import sessions
from thinnest.store.db import Database
from thinnest.store.models import Agent, CallSession, ToolCall

pytestmark = pytest.mark.integration

LONE = "\ud800"


def _nested(levels: int) -> dict[str, Any]:
    """A JSON object ``levels`` containers deep: ``{}`` is 1."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _raw(value: Any) -> bytes:
    """JSON text as Python writes it: a lone surrogate becomes the escape ``\\ud800``."""
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def owner(security_api: RunningApi, database: Database) -> Iterator[Tenant]:
    tenant = new_owner(security_api, database)
    yield tenant
    tenant.http.close()


def _post(tenant: Tenant, path: str, body: Any, method: str = "POST") -> Any:
    return tenant.http.request(
        method, path, content=_raw(body), headers={"Content-Type": "application/json"}
    )


def _assert_422(resp: Any, field: str) -> None:
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["field"] == field, error
    assert error["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("context", "what"),
    [
        pytest.param({"x": LONE}, "value", id="value"),
        pytest.param({LONE: 1}, "key", id="key"),
        pytest.param({"a": [{"b": "ok" + LONE + "ok"}]}, "nested", id="nested-value"),
        pytest.param({"x": "\udc00"}, "low", id="lone-low-surrogate"),
    ],
)
def test_a_lone_surrogate_in_context_is_refused(
    owner: Tenant, context: dict[str, Any], what: str
) -> None:
    agent = owner.create_agent()
    before = owner.http.get("/voice/sessions").json()["total"]
    resp = _post(owner, "/voice/start", {"agent_id": agent["id"], "context": context})
    _assert_422(resp, "context")
    assert "surrogate" in resp.json()["error"]["message"]
    assert owner.http.get("/voice/sessions").json()["total"] == before  # nothing was stored


@pytest.mark.parametrize(
    "number", [float("inf"), float("-inf"), float("nan")], ids=["inf", "-inf", "nan"]
)
def test_nan_and_infinity_are_refused(owner: Tenant, number: float) -> None:
    """Python's JSON parser reads ``Infinity`` and ``NaN``; PostgreSQL refuses to store them."""
    agent = owner.create_agent()
    resp = _post(owner, "/voice/start", {"agent_id": agent["id"], "context": {"n": [number]}})
    _assert_422(resp, "context")
    tool = {"name": "t", "description": "d", "url": "https://example.com/x"}
    params = {"type": "object", "properties": {"n": {"maximum": number}}}
    _assert_422(
        _post(owner, "/agents", {"name": "n", "tools": [{**tool, "parameters": params}]}), "tools"
    )
    assert owner.http.get("/voice/sessions").status_code == 200


def test_stored_nan_and_infinity_are_read_as_null() -> None:
    assert jsonvalue.loads('{"a": Infinity, "b": [NaN, -Infinity, 1.5]}') == {
        "a": None,
        "b": [None, None, 1.5],
    }
    assert json.loads(jsonvalue.dumps({"a": float("inf")})) == {"a": None}


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        pytest.param("GET", "/agents/a%00b", "agent_id", id="agent"),
        pytest.param("PATCH", "/agents/a%00b", "agent_id", id="patch-agent"),
        pytest.param("DELETE", "/agents/a%00b", "agent_id", id="delete-agent"),
        pytest.param("GET", "/voice/sessions/a%00b", "session_id", id="session"),
        pytest.param("POST", "/voice/sessions/a%00b/end", "session_id", id="end"),
        pytest.param("GET", "/voice/sessions/a%00b/recording", "session_id", id="recording"),
        pytest.param("DELETE", "/keys/a%00b", "key_id", id="key"),
        pytest.param("GET", "/voice/sessions?agent_id=a%00b", "agent_id", id="query"),
        pytest.param("GET", "/voice/sessions?status=active&x%00=1", "x\ufffd", id="query-name"),
    ],
)
def test_nul_in_a_path_or_query_is_refused_naming_it(
    owner: Tenant, method: str, path: str, field: str
) -> None:
    """``%00`` is a character no PostgreSQL text parameter takes: it was a 500 there."""
    resp = owner.http.request(method, path, json={"greeting": "x"} if method == "PATCH" else None)
    _assert_422(resp, field)
    assert "NUL" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param("/keys", {"name": "a\x00b"}, "name", id="key-name"),
        pytest.param(
            "/keys",
            {"kind": "publishable", "agents": ["a\x00"], "origins": ["https://a.b"]},
            "agents",
            id="key-agents",
        ),
        pytest.param("/voice/start", {"agent_id": "a\x00b"}, "agent_id", id="agent_id"),
        pytest.param(
            "/agents", {"name": "nul", "instructions": "a\x00b"}, "instructions", id="instructions"
        ),
    ],
)
def test_nul_in_a_body_is_refused_naming_the_field(
    owner: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    _assert_422(_post(owner, path, body), field)


def test_the_engines_text_with_nul_or_a_surrogate_is_stored(
    owner: Tenant, database: Database
) -> None:
    """A tool server may answer U+0000; the engine's writes must not fail on PostgreSQL."""
    agent = owner.create_agent()
    sid = owner.http.post("/voice/start", json={"agent_id": agent["id"]}).json()["session_id"]
    with database.session() as db:
        sessions.add_turn(db, sid, role="agent", text="a\x00b")
        sessions.add_tool_call(
            db, sid, name="t", arguments={}, result="r\x00" + LONE, error="e\x00"
        )
        sessions.finalize(
            db, sessions.get_session(db, sid), status="error", reason="error", error="boom\x00"
        )
    detail = owner.http.get(f"/voice/sessions/{sid}").json()
    assert detail["transcript"][0]["text"] == "a\ufffdb"
    call = detail["tool_calls"][0]
    assert (call["result"], call["error"]) == ("r\ufffd\ufffd", "e\ufffd")
    assert detail["error"] == "boom\ufffd"


def test_a_surrogate_pair_is_text_and_accepted(owner: Tenant) -> None:
    agent = owner.create_agent()
    resp = _post(owner, "/voice/start", {"agent_id": agent["id"], "context": {"x": "😀"}})
    assert resp.status_code == 200, resp.text  # "\ud83d\ude00" is one character
    detail = owner.http.get(f"/voice/sessions/{resp.json()['session_id']}").json()
    assert detail["context"] == {"x": "😀"}


@pytest.mark.parametrize("levels", [17, 33, 250, 500])
def test_deep_context_is_refused_naming_context(owner: Tenant, levels: int) -> None:
    agent = owner.create_agent()
    resp = _post(owner, "/voice/start", {"agent_id": agent["id"], "context": _nested(levels)})
    _assert_422(resp, "context")
    assert "levels deep" in resp.json()["error"]["message"]


def test_context_at_the_depth_limit_is_accepted(owner: Tenant) -> None:
    agent = owner.create_agent()
    context = _nested(16)  # Settings.max_context_depth's default
    assert jsonvalue.depth(context) == 16
    resp = _post(owner, "/voice/start", {"agent_id": agent["id"], "context": context})
    assert resp.status_code == 200, resp.text
    detail = owner.http.get(f"/voice/sessions/{resp.json()['session_id']}").json()
    assert detail["context"] == context


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {
                "tools": [
                    {
                        "name": "t",
                        "description": "d",
                        "url": "https://example.com/x",
                        "parameters": {
                            "type": "object",
                            "properties": {"q": {"description": LONE}},
                        },
                    }
                ]
            },
            "tools",
            id="tool-parameters",
        ),
        pytest.param(
            {
                "tools": [
                    {
                        "name": "t",
                        "description": "d",
                        "url": "https://example.com/x",
                        "parameters": {"type": "object", "properties": _nested(40)},
                    }
                ]
            },
            "tools.0.parameters",
            id="tool-parameters-deep",
        ),
        pytest.param(
            {"providers": {"llm": {"name": "llama", "options": {"seed": LONE}}}},
            "providers",
            id="provider-options",
        ),
        pytest.param({"instructions": "Be " + LONE}, "instructions", id="instructions"),
        pytest.param({"greeting": LONE}, "greeting", id="greeting"),
        pytest.param(
            {
                "tools": [
                    {
                        "name": "t",
                        "description": "d",
                        "url": "https://example.com/x",
                        "headers": {"X-A": LONE},
                    }
                ]
            },
            "tools",
            id="tool-header",
        ),
    ],
)
def test_agent_fields_refuse_what_could_not_be_served_back(
    owner: Tenant, body: dict[str, Any], field: str
) -> None:
    resp = _post(owner, "/agents", {"name": "hostile", **body})
    _assert_422(resp, field)
    agent = owner.create_agent()
    patched = _post(owner, f"/agents/{agent['id']}", body, method="PATCH")
    assert patched.status_code == 422, patched.text
    assert patched.json()["error"]["field"].split(".")[0] == field.split(".")[0]
    assert owner.http.get("/agents").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": LONE}, id="key-name"),
        pytest.param(
            {"kind": "publishable", "agents": [LONE], "origins": ["https://a.b"]}, id="agents"
        ),
    ],
)
def test_key_fields_refuse_a_lone_surrogate(owner: Tenant, body: dict[str, Any]) -> None:
    resp = _post(owner, "/keys", body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"].split(".")[0] in body
    assert owner.http.get("/keys").status_code == 200


def _as_an_old_version(database: Database, table: Any, row_id: Any, **values: Any) -> None:
    """Write with SQLAlchemy's own JSON serialiser, as a version without the checks did."""
    engine = create_engine(database.url)
    try:
        with engine.begin() as conn:
            conn.execute(update(table).where(table.id == row_id).values(**values))
    finally:
        engine.dispose()


def test_rows_stored_with_surrogates_and_deep_nesting_stay_readable(
    owner: Tenant, database: Database
) -> None:
    agent = owner.create_agent()
    resp = owner.http.post("/voice/start", json={"agent_id": agent["id"], "context": {"x": "y"}})
    assert resp.status_code == 200, resp.text
    sid = resp.json()["session_id"]
    with database.session() as db:
        call_id = sessions.add_tool_call(db, sid, name="t", arguments={"q": "fine"}).id
    stored_context = {"x": LONE, LONE + "k": [LONE], "deep": _nested(250)}
    _as_an_old_version(database, CallSession, sid, context=stored_context)
    _as_an_old_version(database, ToolCall, call_id, arguments={"q": LONE})  # an old engine's
    old_config = {**_config(database, agent["id"]), "instructions": "Hi " + LONE}
    _as_an_old_version(database, Agent, agent["id"], config=old_config)

    listed = owner.http.get("/voice/sessions")
    assert listed.status_code == 200, listed.text
    row = next(s for s in listed.json()["data"] if s["id"] == sid)
    assert row["context"]["x"] == "\ufffd"
    assert row["context"]["\ufffdk"] == ["\ufffd"]
    assert jsonvalue.depth(row["context"]) <= jsonvalue.MAX_STORED_DEPTH
    detail = owner.http.get(f"/voice/sessions/{sid}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["tool_calls"][0]["arguments"] == {"q": "\ufffd"}
    ended = owner.http.post(f"/voice/sessions/{sid}/end")
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"

    got = owner.http.get(f"/agents/{agent['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["instructions"] == "Hi \ufffd"
    assert owner.http.get("/agents").status_code == 200
    again = owner.http.post("/voice/start", json={"agent_id": agent["id"]})
    assert again.status_code == 200, again.text  # its dispatch snapshot is repaired too


def _config(database: Database, agent_id: str) -> dict[str, Any]:
    with database.session() as db:
        return dict(db.get(Agent, agent_id).config)  # type: ignore[union-attr]


def test_the_engine_reads_dispatch_metadata_from_an_older_api() -> None:
    """What an API without the checks dispatched: the job reads it instead of crashing."""
    meta = {
        "session_id": "session_x",
        "agent_id": "agent_x",
        "agent": {"name": "a", "instructions": "Hello " + LONE},
        "context": {"x": LONE, "deep": _nested(250)},
        "recording": False,
        "max_duration": 60,
    }
    text = json.dumps(meta)  # what livekit carries: ASCII, with "\ud800" escapes
    with pytest.raises(ValueError):
        DispatchMetadata.model_validate_json(text)  # pydantic's own parser cannot
    parsed = DispatchMetadata.parse(text)
    assert parsed.context["x"] == "\ufffd"
    assert parsed.agent.instructions == "Hello \ufffd"
    assert jsonvalue.depth(parsed.context) <= jsonvalue.MAX_STORED_DEPTH
    parsed.model_dump_json()  # and it can be written out again
