"""Browser assets and the dev demo: ``/web/*`` static files, ``/demo`` and its session routes.

``/web`` (the LiveKit client bundle, the Voice Widget) is always served: any website may load
the widget. The demo page is a developer tool: it starts sessions server-side with the dev
stack's API key (``<data_dir>/dev-credentials.json``), so the key never reaches the browser,
and it is on only where ``Settings.resolved_web_demo`` says so (``env=dev`` by default).
Its routes refuse cross-site requests: another website open in the same browser must not start
calls on the developer's key. They answer only requests addressed to the configured public
origin (``Settings.public_base_url``; in dev also the loopback origins of the API's port): the
``Host`` header must name it, and an ``Origin`` header, where the browser sends one, must be it.
Comparing with the request's own ``Host`` would not do: a DNS-rebinding page (``evil.example``
resolving to 127.0.0.1) sends ``Host`` and ``Origin`` that agree, both its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import DatabaseDep, LiveKitDep, RateLimitsDep, SettingsDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.config import Settings
from thinnest.contracts.session import EndReason
from thinnest.contracts.values import storable
from thinnest.contracts.voice import VoiceStartRequest, VoiceStartResponse
from thinnest.errors import AuthError, ForbiddenError, NotFoundError, UnavailableError
from thinnest.services import sessions
from thinnest.store import agents, keys
from thinnest.store import sessions as session_store
from thinnest.store.db import Database
from thinnest.store.models import ApiKey

#: The built browser assets (demo page, widget, the bundled livekit-client).
WEB_DIR = Path(__file__).resolve().parents[2] / "web"

router = APIRouter(prefix="/demo", tags=["demo"], responses=ERROR_RESPONSES)


class DemoAgent(BaseModel):
    id: str
    name: str
    greeting: str | None = None


class DemoStart(BaseModel):
    agent_id: str = Field(min_length=1, max_length=100)

    @field_validator("agent_id", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        return storable(value)


def _check_demo(request: Request, settings: Settings) -> None:
    if not settings.resolved_web_demo:
        raise NotFoundError(
            "the demo page is off: it is served with THINNEST_ENV=dev or THINNEST_WEB_DEMO=true",
            code="demo_disabled",
        )
    allowed = allowed_origins(settings)
    host = request.headers.get("host", "").lower()
    if host not in {urlsplit(o).netloc for o in allowed}:
        raise ForbiddenError(
            f"the demo routes answer only at {', '.join(sorted(allowed))}, not at host {host!r} "
            "(set THINNEST_PUBLIC_BASE_URL to the address you open it at)",
            code="host_not_allowed",
            field="host",
        )
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in allowed:
        raise ForbiddenError(
            f"the demo routes answer only their own page, not {origin}",
            code="origin_not_allowed",
            field="origin",
        )


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lowercase, without a default port."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # not a port number: the origin matches nothing a browser sends
        port = None
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def allowed_origins(settings: Settings) -> set[str]:
    """The origins the demo page may be served from and call its routes from."""
    allowed = {_origin(settings.resolved_public_base_url)}
    if settings.env == "dev":
        port = settings.api_port
        allowed |= {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
    return allowed


def _dev_key(database: Database, settings: Settings) -> ApiKey:
    plaintext = settings.dev_credentials().get("api_key")
    if not plaintext:
        raise UnavailableError(
            "no dev API key: start the stack with `thinnest dev` (it creates one)",
            code="no_dev_key",
        )
    with database.session() as db:
        try:
            key = keys.authenticate(db, plaintext)
        except AuthError as exc:
            raise UnavailableError(
                f"the dev API key does not work ({exc.message}): restart `thinnest dev`",
                code="no_dev_key",
            ) from exc
        db.expunge(key)
        return key


@router.get("", response_class=FileResponse, include_in_schema=False)
def demo_page(request: Request, settings: SettingsDep) -> FileResponse:
    """The demo page: pick an agent, call it, talk."""
    _check_demo(request, settings)
    return FileResponse(WEB_DIR / "demo.html", headers={"Cache-Control": "no-store"})


@router.get("/agents")
async def demo_agents(
    request: Request, database: DatabaseDep, settings: SettingsDep
) -> list[DemoAgent]:
    """The dev owner's agents, for the demo's picker."""
    _check_demo(request, settings)

    def load() -> list[DemoAgent]:
        key = _dev_key(database, settings)
        with database.session() as db:
            return [
                DemoAgent(id=a.id, name=a.name, greeting=agents.config_of(a).greeting)
                for a in agents.list_agents(db, key.owner_id)
            ]

    return await run_in_threadpool(load)


@router.post("/session")
async def demo_session(
    body: DemoStart,
    request: Request,
    database: DatabaseDep,
    livekit: LiveKitDep,
    limits: RateLimitsDep,
    settings: SettingsDep,
) -> VoiceStartResponse:
    """Start a session with the dev key, as a customer's backend would with theirs."""
    _check_demo(request, settings)
    key = await run_in_threadpool(_dev_key, database, settings)
    await limits.check(key.id, settings.rate_limit_per_minute)
    return await sessions.start(
        VoiceStartRequest.model_validate({"agent_id": body.agent_id}),
        key,
        database=database,
        livekit=livekit,
        settings=settings,
    )


@router.post("/session/{session_id}/end")
async def demo_end(
    session_id: str,
    request: Request,
    database: DatabaseDep,
    livekit: LiveKitDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Hang up: the engine says ``call_ended`` to the page, then the room closes."""
    _check_demo(request, settings)
    key = await run_in_threadpool(_dev_key, database, settings)
    # The visitor pressed Hang up: the caller left (the API's own end is `ended_by_api`).
    await sessions.end(
        session_id, key.owner_id, database=database, livekit=livekit, reason=EndReason.USER_LEFT
    )

    def read() -> dict[str, Any]:
        with database.session() as db:
            row = session_store.get_session(db, session_id, key.owner_id)
            return {"session_id": row.id, "status": row.status, "end_reason": row.end_reason}

    return await run_in_threadpool(read)


def install(app: FastAPI) -> None:
    """Mount ``/web`` (static assets) and the demo routes."""
    app.include_router(router)
    app.mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web")
