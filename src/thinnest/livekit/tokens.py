"""Participant tokens: HS256 JWTs scoped to one room, valid exactly ``TOKEN_TTL`` seconds.

What a caller may publish: ``CALLER_SOURCES``. A track published with no options (the browser's
``publishTrack(mediaStreamTrack)``, Python's ``publish_track(track)``: the documented client
snippets) has the source ``unknown``; LiveKit checks the publish grant against the source only,
never the kind, so ``unknown`` is allowed too. The camera and the screen (video and audio) stay
refused. What the engine does with a track of no source is in docs/security.md.
"""

from __future__ import annotations

import time

import jwt
from livekit.api.access_token import Claims, VideoGrants

TOKEN_TTL = 600
#: The track sources a caller may publish: the microphone, and a track published without a
#: source (LiveKit's ``unknown``), which is how the documented snippets publish the microphone.
CALLER_SOURCES = ("microphone", "unknown")


def participant_grants(room: str) -> VideoGrants:
    """What a caller may do: join this room, publish its microphone (``CALLER_SOURCES``) and
    data, subscribe."""
    return VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
        can_publish_sources=list(CALLER_SOURCES),
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
