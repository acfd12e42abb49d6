"""The gateway's protocol without sockets: auth, messages, limits, drop policy, pacing."""

from __future__ import annotations

import json

import pytest

from thinnest.gateway.protocol import (
    MAX_QUEUED_EVENTS,
    BadMessage,
    CloseCode,
    End,
    InboundGuard,
    Limits,
    Outbox,
    Pacer,
    Ping,
    Rechunker,
    Refusal,
    Start,
    authorize,
    check_session,
    frame_bytes,
    parse_sample_rate,
    parse_text,
    token_from,
)
from thinnest.livekit.tokens import mint_participant_token

pytestmark = pytest.mark.unit
SECRET = "s" * 40


def _token(room: str = "session_a", *, now: float | None = None, secret: str = SECRET) -> str:
    return mint_participant_token(
        api_key="APIk", api_secret=secret, room=room, identity="user", now=now
    )


def _refused(code: CloseCode, fn, *args, **kwargs) -> Refusal:  # type: ignore[no-untyped-def]
    with pytest.raises(Refusal) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    assert info.value.reason and len(info.value.reason.encode()) <= 123
    return info.value


def test_token_from_query_or_bearer_header() -> None:
    assert token_from({"token": "abc"}, {}) == "abc"
    assert token_from({}, {"authorization": "Bearer xyz"}) == "xyz"
    assert token_from({"token": "q"}, {"authorization": "Bearer h"}) == "q"
    _refused(CloseCode.BAD_TOKEN, token_from, {}, {})
    _refused(CloseCode.BAD_TOKEN, token_from, {}, {"authorization": "Basic abc"})
    _refused(CloseCode.BAD_TOKEN, token_from, {"token": "  "}, {})


def test_authorize_checks_signature_expiry_and_room() -> None:
    claims = authorize(_token(), api_secret=SECRET, session_id="session_a")
    assert claims["sub"] == "user"
    _refused(CloseCode.BAD_TOKEN, authorize, "garbage", api_secret=SECRET, session_id="session_a")
    forged = _token(secret="x" * 40)
    _refused(CloseCode.BAD_TOKEN, authorize, forged, api_secret=SECRET, session_id="session_a")
    expired = _token(now=1_000_000)
    refusal = _refused(
        CloseCode.BAD_TOKEN, authorize, expired, api_secret=SECRET, session_id="session_a"
    )
    assert "expired" in refusal.reason
    other = _token("session_b")
    _refused(CloseCode.WRONG_ROOM, authorize, other, api_secret=SECRET, session_id="session_a")


def test_session_status() -> None:
    check_session("active")
    check_session("starting")
    _refused(CloseCode.UNKNOWN_SESSION, check_session, None)
    for final in ("ended", "error", "failed"):
        _refused(CloseCode.SESSION_ENDED, check_session, final)


def test_text_messages() -> None:
    assert parse_text('{"type": "start", "sample_rate": 8000}') == Start(8000)
    assert parse_text('{"type": "start"}') == Start(16000)
    assert parse_text('{"type": "start", "sample_rate": "48000"}') == Start(48000)
    assert parse_text('{"type": "end"}') == End()
    assert parse_text('{"type": "ping"}') == Ping()
    for garbage in ("", "not json", "[1, 2]", '"start"', '{"type": "dance"}', "{}"):
        with pytest.raises(BadMessage):
            parse_text(garbage)
    for rate in (0, 11025, -16000, "fast", True, None, 16000.5):
        _refused(
            CloseCode.BAD_REQUEST, parse_text, json.dumps({"type": "start", "sample_rate": rate})
        )
    assert parse_sample_rate("24000") == 24000


def test_rechunker_cuts_exact_frames_and_keeps_the_rest() -> None:
    size = frame_bytes(16000)
    assert size == 640  # 20 ms of 16-bit mono at 16 kHz
    assert frame_bytes(44100) == 1764
    chunker = Rechunker(size)
    assert chunker.push(b"\x01" * 100) == []
    frames = chunker.push(b"\x02" * 1500)
    assert [len(f) for f in frames] == [640, 640]
    assert frames[0][:100] == b"\x01" * 100
    assert chunker.pending == 1600 - 1280
    # Odd-sized pieces (half a sample) are joined, never misaligned.
    chunker = Rechunker(4)
    assert chunker.push(b"\x00\x01\x02") == []
    assert chunker.push(b"\x03\x04") == [b"\x00\x01\x02\x03"]
    with pytest.raises(ValueError):
        Rechunker(3)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_guard_limits_frame_size_and_message_rate() -> None:
    clock = Clock()
    guard = InboundGuard(Limits(max_frame_bytes=1000, max_messages_per_second=10), clock=clock)
    guard.check(1000)
    _refused(CloseCode.TOO_BIG, guard.check, 1001)
    for _ in range(19):  # a burst of twice the rate is allowed
        guard.check(10)
    _refused(CloseCode.POLICY, guard.check, 10)
    clock.now += 1.0  # a second later, ten more
    for _ in range(10):
        guard.check(10)
    _refused(CloseCode.POLICY, guard.check, 10)


def test_outbox_drops_oldest_audio_never_events() -> None:
    box = Outbox(max_audio_frames=3)
    for i in range(10):
        box.put_audio(bytes([i]))
        box.put_event(f"event {i}")
    assert list(box.audio) == [b"\x07", b"\x08", b"\x09"]
    assert box.dropped_frames == 7
    assert len(box.events) == 10
    for i in range(MAX_QUEUED_EVENTS - 10):
        box.put_event(str(i))
    _refused(CloseCode.POLICY, box.put_event, "one too many")


def test_pacer_spaces_frames_20ms_and_catches_up_after_a_lump() -> None:
    pacer = Pacer()
    assert pacer.delay(10.0) == 0.0
    pacer.sent()
    assert pacer.delay(10.0) == pytest.approx(0.02)
    assert pacer.delay(10.015) == pytest.approx(0.005)
    pacer.sent()
    assert pacer.delay(10.02) == pytest.approx(0.02)
    # A backlog (audio arrived in a lump) goes out now instead of adding latency.
    assert pacer.delay(10.02, backlog=10) == 0.0
    pacer.sent()
    # After a pause the schedule restarts from now: no burst to "make up" the gap.
    assert pacer.delay(20.0) == 0.0
    pacer.sent()
    assert pacer.delay(20.0) == pytest.approx(0.02)
