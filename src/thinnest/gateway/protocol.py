"""The WebSocket gateway's protocol, free of I/O: auth checks, messages, limits, queues.

A client of ``GET /ws/{session_id}`` speaks this protocol (documented in the README):

- it authenticates with the session's token (``?token=`` or ``Authorization: Bearer``);
- its first message is either a text ``{"type": "start", "sample_rate": 16000}`` or audio;
- binary frames are 16-bit little-endian mono PCM at the client's rate, both ways;
- text frames from the gateway are the data channel's JSON events (plus ``ready``);
- a text ``{"type": "end"}`` hangs up.

Everything here is plain data and pure functions so the server module
(:mod:`thinnest.gateway.bridge`) stays thin and this one is tested without sockets.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import jwt

from thinnest.contracts.events import ErrorEvent, Ready
from thinnest.contracts.session import OPEN_STATUSES
from thinnest.livekit.tokens import decode_token
from thinnest.services.ratelimit import TokenBucket

#: Sample rates a client may use (Hz); audio is resampled to and from LiveKit's 48 kHz.
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_SAMPLE_RATE = 16000
#: Duration of each agent audio frame the gateway sends (and of its input frames to LiveKit).
FRAME_MS = 20
#: Events a slow reader may have queued before it is disconnected (events are never dropped).
MAX_QUEUED_EVENTS = 1000
#: How far behind its 20 ms schedule the sender may fall before it restarts the schedule.
MAX_PACING_LAG = 0.06
#: Agent audio frames waiting beyond which the sender catches up without pacing.
MAX_PACED_BACKLOG = 3


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses (4xxx: this application's own)."""

    NORMAL = 1000  # call ended, or the client hung up
    GOING_AWAY = 1001  # the server is shutting down
    POLICY = 1008  # message rate over the limit, or a reader too slow for its events
    TOO_BIG = 1009  # a message larger than the frame limit
    INTERNAL = 1011  # the gateway could not join the room
    BAD_REQUEST = 4400  # invalid start message or sample rate
    BAD_TOKEN = 4401  # missing, malformed, badly signed or expired token
    WRONG_ROOM = 4403  # the token is for another session's room
    UNKNOWN_SESSION = 4404  # no such session
    IDLE = 4408  # no message from the client within the idle timeout
    REPLACED = 4409  # another connection joined the session as the same participant
    SESSION_ENDED = 4410  # the session is already over (or its room closed)


class Refusal(Exception):
    """The connection must close with ``code`` and a short human ``reason``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        # A close frame's reason is at most 123 bytes of UTF-8.
        self.reason = reason.encode()[:123].decode(errors="ignore")


class BadMessage(ValueError):
    """A text message the gateway cannot use; answered with an ``error`` event."""


# --- authentication -----------------------------------------------------------------------


def token_from(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The session token from ``?token=`` or an ``Authorization: Bearer`` header."""
    token = query.get("token", "").strip()
    if not token:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    if not token:
        raise Refusal(CloseCode.BAD_TOKEN, "missing token: pass ?token= or Authorization: Bearer")
    return token


def authorize(token: str, *, api_secret: str, session_id: str) -> dict[str, Any]:
    """Verify the token's signature and expiry, and that it admits into ``session_id``'s room.

    Returns the claims; raises :class:`Refusal` (4401 or 4403) otherwise.
    """
    try:
        claims = decode_token(token, api_secret=api_secret)
    except jwt.ExpiredSignatureError:
        raise Refusal(CloseCode.BAD_TOKEN, "token expired") from None
    except jwt.PyJWTError:
        raise Refusal(CloseCode.BAD_TOKEN, "invalid token") from None
    video = claims.get("video")
    if not isinstance(video, dict) or not video.get("roomJoin"):
        raise Refusal(CloseCode.BAD_TOKEN, "the token does not admit into a room")
    if video.get("room") != session_id:
        raise Refusal(CloseCode.WRONG_ROOM, "the token is for another session")
    return claims


def check_session(status: str | None) -> None:
    """A session may be joined while ``starting`` or ``active``."""
    if status is None:
        raise Refusal(CloseCode.UNKNOWN_SESSION, "unknown session")
    if status not in OPEN_STATUSES:
        raise Refusal(CloseCode.SESSION_ENDED, f"session is {status}")


# --- client messages ----------------------------------------------------------------------


def parse_sample_rate(value: object) -> int:
    """A supported sample rate from a query string or JSON value; :class:`Refusal` 4400."""
    try:
        rate = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        rate = -1
    if rate not in SAMPLE_RATES:
        raise Refusal(
            CloseCode.BAD_REQUEST,
            f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}",
        )
    return rate


@dataclass(frozen=True)
class Start:
    sample_rate: int


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = Start | End | Ping


def parse_text(text: str) -> ClientMessage:
    """A client's text message; :class:`BadMessage` if it is not one the protocol knows."""
    try:
        message = json.loads(text)
    except ValueError:
        raise BadMessage("text messages must be JSON objects") from None
    if not isinstance(message, dict):
        raise BadMessage("text messages must be JSON objects")
    kind = message.get("type")
    if kind == "start":
        if "sample_rate" not in message:
            return Start(DEFAULT_SAMPLE_RATE)
        return Start(parse_sample_rate(message["sample_rate"]))
    if kind == "end":
        return End()
    if kind == "ping":
        return Ping()
    raise BadMessage(f"unknown message type {kind!r}: expected start, end or ping")


def error_event(code: str, message: str) -> str:
    return ErrorEvent(code=code, message=message).to_json()


def ready_event(session_id: str, sample_rate: int) -> str:
    return Ready(session_id=session_id, sample_rate=sample_rate, frame_ms=FRAME_MS).to_json()


# --- audio framing, limits, queues --------------------------------------------------------


def frame_bytes(sample_rate: int, ms: int = FRAME_MS) -> int:
    """Bytes of one ``ms`` frame of 16-bit mono PCM at ``sample_rate``."""
    return sample_rate * ms // 1000 * 2


class Rechunker:
    """Cuts a stream of PCM bytes into frames of exactly ``size`` bytes, keeping the rest."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % 2:
            raise ValueError("frame size must be a positive even number of bytes")
        self.size = size
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % self.size
        frames = [bytes(self._buffer[i : i + self.size]) for i in range(0, whole, self.size)]
        del self._buffer[:whole]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


@dataclass
class Limits:
    """Per-connection limits (from Settings)."""

    max_frame_bytes: int = 65536
    max_messages_per_second: int = 100
    idle_timeout: float = 30.0
    audio_buffer_ms: int = 1000


class InboundGuard:
    """Checks every client message against the frame-size and message-rate limits."""

    def __init__(self, limits: Limits, *, clock: Any = time.monotonic) -> None:
        self.limits = limits
        rate = limits.max_messages_per_second
        self._bucket = TokenBucket(rate, 2 * rate, clock=clock)

    def check(self, size: int) -> None:
        if size > self.limits.max_frame_bytes:
            raise Refusal(
                CloseCode.TOO_BIG,
                f"message of {size} bytes; the limit is {self.limits.max_frame_bytes}",
            )
        if not self._bucket.take():
            raise Refusal(
                CloseCode.POLICY,
                f"more than {self.limits.max_messages_per_second} messages a second",
            )


@dataclass
class Outbox:
    """What waits to be sent to the client: events (never dropped) and agent audio (bounded).

    Drop policy: when more than ``max_audio_frames`` of agent audio wait (the client reads
    slower than real time), the *oldest* frames are dropped, so a client that catches up hears
    the present. Events are never dropped; more than :data:`MAX_QUEUED_EVENTS` waiting means
    the client is not reading at all, and it is disconnected (1008).
    """

    max_audio_frames: int
    events: deque[str] = field(default_factory=deque)
    audio: deque[bytes] = field(default_factory=deque)
    dropped_frames: int = 0

    def put_event(self, text: str) -> None:
        if len(self.events) >= MAX_QUEUED_EVENTS:
            raise Refusal(CloseCode.POLICY, "client is not reading its messages")
        self.events.append(text)

    def put_audio(self, frame: bytes) -> None:
        self.audio.append(frame)
        while len(self.audio) > self.max_audio_frames:
            self.audio.popleft()
            self.dropped_frames += 1

    def __len__(self) -> int:
        return len(self.events) + len(self.audio)


class Pacer:
    """When to send the next audio frame so frames leave every ``interval`` seconds.

    The schedule advances one interval per frame; after a gap (no audio) or when the sender
    fell more than :data:`MAX_PACING_LAG` behind, it restarts from now instead of bursting.
    """

    def __init__(self, interval: float = FRAME_MS / 1000) -> None:
        self.interval = interval
        self._due: float | None = None

    def delay(self, now: float, backlog: int = 1) -> float:
        """Seconds to wait before sending the next frame (0: send now).

        With more than :data:`MAX_PACED_BACKLOG` frames waiting (audio arrived late, in a
        lump), the frame goes now: holding it back would only add latency.
        """
        if self._due is None or now - self._due > MAX_PACING_LAG or backlog > MAX_PACED_BACKLOG:
            self._due = now
        return max(0.0, self._due - now)

    def sent(self) -> None:
        assert self._due is not None
        self._due += self.interval
