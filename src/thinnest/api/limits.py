"""Request limits: the body-size guard (ASGI middleware) and per-key rate limiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinnest.api.errors import error_response
from thinnest.errors import RateLimitError
from thinnest.services.ratelimit import TokenBucket
from thinnest.store import ratelimits
from thinnest.store.db import Database


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with a 422 naming ``body``, before they are read whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        too_large = refused = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns an error while reading the body into its own answer: replace it.
            nonlocal refused
            if not too_large:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not refused:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            422, "body_too_large", f"request body is larger than {self.max_bytes} bytes", "body"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class RateLimiter:
    """A token bucket per key: ``per_minute`` calls, refilled continuously. Thread-safe."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimitError` with ``retry_after``."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(
                    self.rate, self.capacity, clock=self._clock
                )
            if not bucket.take():
                raise RateLimitError(
                    f"rate limit of {int(self.capacity)} calls per minute exceeded for this key",
                    retry_after=bucket.wait(),
                )
            if len(self._buckets) > 100_000:  # bound memory: forget full buckets
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < self.capacity}


class RateLimits:
    """Every key's ``POST /voice/start`` rate: ``per_minute`` calls at once, then one every
    ``60 / per_minute`` seconds.

    Kept in the database (``shared``, the default): every API process and host takes from one
    bucket per key, so N processes do not give a key N times its rate. Or in this process's
    memory (``Settings.rate_limit_store = "memory"``), for one API process.
    """

    def __init__(
        self, database: Database, *, shared: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._database = database
        self._shared = shared
        self._clock = clock
        self._local: dict[int, RateLimiter] = {}
        self._lock = threading.Lock()

    async def check(self, key_id: str, per_minute: int) -> None:
        """Take one call of ``key_id`` or raise :class:`RateLimitError` with ``retry_after``."""
        if not self._shared:
            with self._lock:
                limiter = self._local.get(per_minute)
                if limiter is None:
                    limiter = self._local[per_minute] = RateLimiter(per_minute)
            limiter.check(key_id)
            return
        wait = await run_in_threadpool(self._take, key_id, per_minute)
        if wait > 0:
            raise RateLimitError(
                f"rate limit of {per_minute} calls per minute exceeded for this key",
                retry_after=wait,
            )

    def _take(self, key_id: str, per_minute: int) -> float:
        with self._database.writing() as db:
            return ratelimits.take(db, key_id, per_minute, now=self._clock())
