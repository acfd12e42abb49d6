"""Request limits: the body-size guard (ASGI middleware) and per-key rate limiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinnest.api.errors import error_response
from thinnest.errors import RateLimitError
from thinnest.services.ratelimit import TokenBucket


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
