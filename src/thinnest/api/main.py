"""The FastAPI app factory: ``create_app(settings)`` wires store, LiveKit, limits and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from thinnest import __version__
from thinnest.api import backstop, docs, errors
from thinnest.api.limits import BodySizeLimit, RateLimits
from thinnest.api.publishable import VoiceStartCors
from thinnest.api.routes import (
    agents,
    console,
    health,
    keys,
    livekit,
    metrics,
    sessions,
    stats,
    voice,
    web,
    webhooks,
)
from thinnest.api.textguard import NulGuard
from thinnest.config import Settings, get_settings
from thinnest.gateway import route as gateway
from thinnest.livekit.rooms import LiveKitService
from thinnest.log import configure
from thinnest.services import webhooks as webhook_sender
from thinnest.store.db import Database

DESCRIPTION = """Start real-time voice sessions with AI agents.

Authenticate with `Authorization: Bearer <api_key>` (create one with
`thinnest keys create --owner NAME`, or `POST /keys`).
Errors are `{"error": {"code": "...", "message": "...", "field": "..."}}`.
"""


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the API app; the database is migrated when the app starts."""
    settings = settings or get_settings()
    db = database or Database(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(db.migrate)
        app.state.livekit = LiveKitService(settings)
        sweeper = asyncio.create_task(
            backstop.sweeper(db, app.state.livekit, settings.sweep_interval)
        )
        app.state.webhook_nudge = asyncio.Event()
        app.state.webhook_loop = asyncio.get_running_loop()
        sender = asyncio.create_task(
            webhook_sender.deliverer(db, settings, app.state.webhook_nudge)
            if settings.webhook_send
            else asyncio.Event().wait()  # only queues: another process sends
        )
        try:
            yield
        finally:
            sweeper.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper  # it gives the backstop's lease up on its way out
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await app.state.livekit.aclose()
            if database is None:
                db.close()

    app = FastAPI(
        title="Thinnest",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs.install serves /docs and /redoc with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.rate_limits = RateLimits(db, shared=settings.rate_limit_store == "database")
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(NulGuard)
    app.add_middleware(VoiceStartCors)
    if settings.metrics_enabled:
        # Outermost: it times and counts the requests the other middlewares refuse too.
        app.add_middleware(metrics.RequestMetrics)
        app.include_router(metrics.router)
    for module in (health, voice, sessions, agents, keys, livekit, webhooks, stats, console):
        app.include_router(module.router)
    web.install(app)
    docs.install(app)
    app.include_router(gateway.router)
    return app


def app_from_environment() -> FastAPI:
    """The app of one of ``thinnest serve --workers N``'s processes: its settings and its
    logging from the environment (a new process inherits neither from the one that started it)."""
    settings = get_settings()
    configure(settings.log_level)
    return create_app(settings)
