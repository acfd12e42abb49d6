"""Participant tokens: HS256 JWTs scoped to one room, valid exactly ``TOKEN_TTL`` seconds."""

from __future__ import annotations

import time

import jwt
from livekit.api.access_token import Claims, VideoGrants

TOKEN_TTL = 600


def participant_grants(room: str) -> VideoGrants:
    """What a caller may do: join this room, publish its microphone and data, subscribe."""
    return VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
        can_publish_sources=["microphone"],
        can_update_own_metadata=False,
    )


def mint_participant_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str = "",
    now: float | None = None,
) -> str:
    """A token admitting ``identity`` into ``room`` and nothing else; ``exp - iat = TOKEN_TTL``.

    Built by hand rather than with ``AccessToken.to_jwt`` because the contract promises an
    ``iat`` claim, which that helper does not set.
    """
    issued = int(now if now is not None else time.time())
    claims = Claims(identity=identity, name=name, video=participant_grants(room)).asdict()
    claims.update(
        {"sub": identity, "iss": api_key, "iat": issued, "nbf": issued, "exp": issued + TOKEN_TTL}
    )
    return jwt.encode(claims, api_secret, algorithm="HS256")


def decode_token(token: str, *, api_secret: str, leeway: float = 0) -> dict[str, object]:
    """Verify signature and expiry; raises ``jwt.PyJWTError`` when the token is not valid."""
    return jwt.decode(
        token,
        api_secret,
        algorithms=["HS256"],
        leeway=leeway,
        options={"require": ["exp", "iat", "sub"]},
    )
