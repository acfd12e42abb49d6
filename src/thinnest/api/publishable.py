"""Publishable keys at ``POST /voice/start``: the ``Origin`` check, their rate limit, CORS.

A publishable key sits in a web page, so anyone can read it. What makes it safe:

- it only starts sessions, only with the agents it names (``deps.CurrentKey`` refuses it
  everywhere else with 403);
- a browser always sends ``Origin`` on a cross-origin ``POST`` and page scripts cannot forge it,
  so another website's page cannot use the key: its origin is checked against the key's list;
- its own per-key rate limit bounds what a non-browser client, which can send any ``Origin``,
  gets out of a copied key.

CORS is not the control here, the ``Origin`` check is. :class:`VoiceStartCors` answers the
preflight of ``/voice/start`` for any origin (the preflight carries no key, so it cannot know
the key's origins) and makes a response readable by the page only where the handler allowed it
(:func:`allow_cors`): a publishable key's own origin, and the refusal of another origin (so a
widget can show why). A secret key's response is never readable by a page: it must not be used
from a browser.
"""

from __future__ import annotations

import threading

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinnest.api.limits import RateLimiter
from thinnest.errors import ForbiddenError, NotFoundError
from thinnest.store import agents
from thinnest.store.db import Database
from thinnest.store.models import ApiKey

PATH = "/voice/start"
_STATE_FLAG = "thinnest_cors_origin"


def allow_cors(request: Request, origin: str) -> None:
    """Let the page at ``origin`` read this response (set before raising, errors included)."""
    request.state.__setattr__(_STATE_FLAG, origin)


def check_origin(request: Request, key: ApiKey) -> None:
    """Refuse a publishable key used from an origin it does not allow."""
    origin = request.headers.get("origin")
    if origin is not None:
        allow_cors(request, origin)
    if (origin or "").strip().lower() not in key.allowed_origins:
        where = f"this website ({origin})" if origin else "a request without an Origin header"
        raise ForbiddenError(
            f"{where} may not use this publishable key: its allowed origins are "
            f"{', '.join(key.allowed_origins)}. Create a key for the site's origin with "
            "`thinnest keys create --owner OWNER --publishable --agent NAME "
            f"--origin {origin or 'https://…'}`",
            code="origin_not_allowed",
            field="origin",
        )


def check_agent(database: Database, key: ApiKey, agent_id: str) -> None:
    """Refuse a publishable key for an agent it does not name; an unknown agent gets the
    same answer (existence never leaks)."""
    with database.session() as db:
        try:
            resolved = agents.get_agent(db, key.owner_id, agent_id).id
        except NotFoundError:
            resolved = None
    if resolved is None or resolved not in key.allowed_agents:
        raise ForbiddenError(
            f"this publishable key may not start sessions with agent {agent_id!r}",
            code="agent_not_allowed",
            field="agent_id",
        )


class PublishableLimits:
    """One token bucket per publishable key, at the key's own rate (or the default)."""

    def __init__(self, default_per_minute: int) -> None:
        self.default_per_minute = default_per_minute
        self._limiters: dict[int, RateLimiter] = {}
        self._lock = threading.Lock()

    def check(self, key: ApiKey) -> None:
        rate = key.rate_limit_per_minute or self.default_per_minute
        with self._lock:
            limiter = self._limiters.get(rate)
            if limiter is None:
                limiter = self._limiters[rate] = RateLimiter(rate)
        limiter.check(key.id)


class VoiceStartCors:
    """CORS for ``POST /voice/start`` only; see the module docstring for why and how."""

    def __init__(self, app: ASGIApp, *, max_age: int = 600) -> None:
        self.app = app
        self.max_age = max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and origin and "access-control-request-method" in headers:
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "authorization, content-type",
                    "Access-Control-Max-Age": str(self.max_age),
                    "Vary": "Origin",
                },
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                allowed = scope["state"].get(_STATE_FLAG)
                extra = [(b"vary", b"Origin")]
                if allowed is not None and allowed == origin:
                    extra.append((b"access-control-allow-origin", allowed.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
