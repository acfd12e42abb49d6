"""The token bucket behind every rate limit: the API's per-key limits of ``/voice/start`` and
the WebSocket gateway's per-connection message rate."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; it starts full.

    Not thread-safe by itself: a caller that shares one among threads holds a lock.
    """

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self.tokens = burst
        self._last = clock()

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; False (and nothing taken) if not."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def wait(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there (0 if they are now), as of the last take."""
        return max(0.0, (n - self.tokens) / self.rate)
