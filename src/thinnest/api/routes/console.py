"""The operator console: its page (``/console``) and its sign-in (``/console/session``).

The page signs in with a secret API key once; the API answers with a random token in an
HttpOnly, SameSite=Strict cookie and a CSRF token the page keeps in memory. After that the
page calls the same JSON API as any client (:mod:`thinnest.api.deps` accepts the cookie in
place of the bearer key), sending the CSRF token on every write. The key itself is never
stored by the page nor sent again.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import CONSOLE_COOKIE, DatabaseDep, SettingsDep, check_csrf
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.routes.web import WEB_DIR
from thinnest.config import Settings
from thinnest.errors import AuthError, ForbiddenError, NotFoundError
from thinnest.store import console, keys
from thinnest.store.db import Database
from thinnest.store.models import ConsoleSession

router = APIRouter(prefix="/console", tags=["console"], responses=ERROR_RESPONSES)

#: The page loads only its own scripts and styles, calls only this API, and is never framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; media-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SignIn(BaseModel):
    api_key: str = Field(min_length=1, max_length=200, description="a secret API key")


class ConsoleOwner(BaseModel):
    id: str
    name: str


class ConsoleKey(BaseModel):
    id: str
    prefix: str
    name: str


class ConsoleSessionOut(BaseModel):
    owner: ConsoleOwner
    key: ConsoleKey
    csrf_token: str = Field(description="send it in X-CSRF-Token on every write")
    expires_at: datetime


def _check_enabled(settings: Settings) -> None:
    if not settings.console_enabled:
        raise NotFoundError(
            "the console is off: set THINNEST_CONSOLE_ENABLED=true to serve it",
            code="console_disabled",
        )


def _out(row: ConsoleSession) -> ConsoleSessionOut:
    key = row.key
    return ConsoleSessionOut(
        owner=ConsoleOwner(id=key.owner.id, name=key.owner.name),
        key=ConsoleKey(id=key.id, prefix=key.prefix, name=key.name),
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
    )


@router.get("", response_class=FileResponse, include_in_schema=False)
def console_page(settings: SettingsDep) -> FileResponse:
    """The console's single page."""
    _check_enabled(settings)
    return FileResponse(WEB_DIR / "console.html", headers=PAGE_HEADERS)


@router.post("/session")
async def sign_in(
    body: SignIn,
    request: Request,
    response: Response,
    database: DatabaseDep,
    settings: SettingsDep,
) -> ConsoleSessionOut:
    """Sign in with a secret API key: sets the console's session cookie."""
    _check_enabled(settings)

    def open_one() -> tuple[ConsoleSessionOut, str]:
        with database.session() as db:
            try:
                key = keys.authenticate(db, body.api_key.strip())
            except AuthError as exc:
                raise AuthError(exc.message, code=exc.code, field="api_key") from exc
            if key.kind != keys.SECRET:
                raise ForbiddenError(
                    "the console needs a secret API key (tn_sk_…), not a publishable one",
                    code="publishable_key_not_allowed",
                    field="api_key",
                )
            # Whatever sign-in this browser had ends: the new one gets a new token, so a
            # session id planted before the sign-in is never the one that is signed in.
            console.sign_out(db, request.cookies.get(CONSOLE_COOKIE))
            row, token = console.open_session(db, key, hours=settings.console_session_hours)
            return _out(row), token

    out, token = await run_in_threadpool(open_one)
    response.set_cookie(
        CONSOLE_COOKIE,
        token,
        max_age=int(settings.console_session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.resolved_public_base_url.startswith("https://"),
    )
    response.headers["Cache-Control"] = "no-store"
    return out


@router.get("/session")
async def current(request: Request, response: Response, database: DatabaseDep) -> ConsoleSessionOut:
    """The signed-in console session (the page reads its CSRF token here after a reload)."""
    response.headers["Cache-Control"] = "no-store"
    return await run_in_threadpool(_read, database, request.cookies.get(CONSOLE_COOKIE))


def _read(database: Database, token: str | None) -> ConsoleSessionOut:
    with database.session() as db:
        return _out(console.authenticate(db, token))


@router.delete("/session", status_code=204)
async def sign_out(request: Request, database: DatabaseDep, settings: SettingsDep) -> Response:
    """Sign out: the session ends on the server, and the cookie is cleared."""
    token = request.cookies.get(CONSOLE_COOKIE)

    def end() -> None:
        with database.session() as db:
            check_csrf(console.authenticate(db, token), request)
            console.sign_out(db, token)

    await run_in_threadpool(end)
    response = Response(status_code=204)
    response.delete_cookie(
        CONSOLE_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.resolved_public_base_url.startswith("https://"),
    )
    return response
