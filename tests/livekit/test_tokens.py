"""Participant tokens: room-scoped grants and an exact 600 s lifetime."""

from __future__ import annotations

import jwt
import pytest

from thinnest.livekit.tokens import TOKEN_TTL, decode_token, mint_participant_token

pytestmark = pytest.mark.unit
SECRET = "s" * 40


def test_token_is_room_scoped_and_lives_600_seconds() -> None:
    token = mint_participant_token(
        api_key="APIk", api_secret=SECRET, room="session_a", identity="user", now=1_000_000
    )
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["iat"] == 1_000_000
    assert claims["exp"] - claims["iat"] == TOKEN_TTL == 600
    assert claims["iss"] == "APIk"
    assert claims["sub"] == "user"
    video = claims["video"]
    assert video["room"] == "session_a"
    assert video["roomJoin"] is True
    # The microphone, labelled or not (the documented snippets publish without a source);
    # never the camera or the screen (tests/livekit/test_publish_grants.py, on the server).
    assert sorted(video["canPublishSources"]) == ["microphone", "unknown"]
    assert video["canPublishData"] is True and video["canSubscribe"] is True
    for admin in ("roomAdmin", "roomCreate", "roomList", "roomRecord", "agent", "hidden"):
        assert admin not in video


def test_expired_or_foreign_tokens_do_not_verify() -> None:
    old = mint_participant_token(
        api_key="k", api_secret=SECRET, room="r", identity="u", now=1_000_000
    )
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_token(old, api_secret=SECRET)
    fresh = mint_participant_token(api_key="k", api_secret=SECRET, room="r", identity="u")
    assert decode_token(fresh, api_secret=SECRET)["video"]["room"] == "r"  # type: ignore[index]
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token(fresh, api_secret="x" * 40)
