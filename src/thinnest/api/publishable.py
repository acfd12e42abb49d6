"""Publishable keys at ``POST /voice/start``: the ``Origin`` check, their rate limit, CORS.

A publishable key sits in a web page, so anyone can read it. What makes it safe:

- it only starts sessions, only with the agents it names (``deps.CurrentKey`` refuses it
  everywhere else with 403);
- a browser always sends ``Origin`` on a cross-origin ``POST`` and page scripts cannot forge it,
  so another website's page cannot use the key: its origin is checked against the key's list;
- its own per-key rate limit bounds what a non-browser client, which can send any ``Origin``,
  gets out of a copied key, and so does its cap on open sessions
  (``Settings.publishable_max_open_sessions`` unless the key sets ``max_open_sessions``;
  checked in the start's own transaction, :func:`thinnest.services.sessions.start`): a
  copied key cannot hold every worker slot with calls nobody joins.

What a visitor may ask for is bounded by the agent (:func:`check_start`, 403 naming the field):
``max_duration`` may only shorten the agent's, ``recording`` may turn recording off but never
on. Its ``context`` reaches the model as quoted data, never as instructions
(:mod:`thinnest.engine.prompt`).

CORS is not the control here, the ``Origin`` check is. :class:`VoiceStartCors` answers the
preflight of ``/voice/start`` for any origin (the preflight carries no key, so it cannot know
the key's origins) and makes a response readable by the page only where the handler allowed it
(:func:`allow_cors`): a publishable key's own origin, and the refusal of another origin (so a
widget can show why). A secret key's response is never readable by a page: it must not be used
from a browser.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinnest.config import Settings
from thinnest.contracts.agent import AgentConfig
from thinnest.contracts.voice import VoiceStartRequest
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


def check_agent(database: Database, key: ApiKey, agent_id: str) -> AgentConfig:
    """Refuse a publishable key for an agent it does not name; an unknown agent gets the
    same answer (existence never leaks). Returns the agent's config."""
    with database.session() as db:
        try:
            agent = agents.get_agent(db, key.owner_id, agent_id)
        except NotFoundError:
            agent = None
        if agent is not None and agent.id in key.allowed_agents:
            return agents.config_of(agent)
    raise ForbiddenError(
        f"this publishable key may not start sessions with agent {agent_id!r}",
        code="agent_not_allowed",
        field="agent_id",
    )


def check_start(
    database: Database, key: ApiKey, body: VoiceStartRequest, settings: Settings
) -> None:
    """Refuse what a visitor may not ask of the agent: an agent the key does not name, a
    longer ``max_duration`` than the agent's, ``recording`` the agent does not do."""
    config = check_agent(database, key, body.agent_id)
    agent_max = config.max_duration or settings.default_max_duration
    if body.max_duration is not None and body.max_duration > agent_max:
        raise ForbiddenError(
            f"a publishable key may only shorten max_duration: at most {agent_max} seconds "
            "(the agent's)",
            code="max_duration_not_allowed",
            field="max_duration",
        )
    if body.recording and not config.recording:
        raise ForbiddenError(
            "a publishable key may not turn recording on: the agent does not record calls",
            code="recording_not_allowed",
            field="recording",
        )


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
