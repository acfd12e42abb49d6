"""What a caller's token lets it publish, checked by the real livekit-server: the microphone,
labelled or not (the documented snippets publish without options: source ``unknown``), and
never the camera or the screen."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import numpy as np
import pytest
from livekit.api import CreateRoomRequest, ListParticipantsRequest, LiveKitAPI

from livekit import rtc
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.livekit.tokens import mint_participant_token

pytestmark = pytest.mark.integration

#: A refused publication never completes (the server answers NOT_ALLOWED; the Python SDK then
#: waits for its own timeout): this long is plenty for an allowed one on a loaded machine.
PUBLISH_WITHIN = 5.0
KINDS = {"audio": rtc.TrackKind.KIND_AUDIO, "video": rtc.TrackKind.KIND_VIDEO}
SOURCES = {
    "none": None,
    "microphone": rtc.TrackSource.SOURCE_MICROPHONE,
    "camera": rtc.TrackSource.SOURCE_CAMERA,
    "screen_share": rtc.TrackSource.SOURCE_SCREENSHARE,
    "screen_share_audio": rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO,
}


@pytest.fixture
async def caller(livekit_server: LiveKitDevServer) -> AsyncIterator[rtc.Room]:
    """A participant in a fresh room, joined with the token ``/voice/start`` would mint."""
    options = livekit_server.options
    name = f"session_{secrets.token_hex(6)}"
    async with LiveKitAPI(options.url, options.api_key, options.api_secret) as lk:
        await lk.room.create_room(CreateRoomRequest(name=name))  # as /voice/start does
    token = mint_participant_token(
        api_key=options.api_key, api_secret=options.api_secret, room=name, identity="user"
    )
    room = rtc.Room()
    await room.connect(options.url, token)
    yield room
    await room.disconnect()


async def _publish(room: rtc.Room, kind: str, source: str) -> bool:
    """Whether the server accepted a ``kind`` track published with ``source`` (``none``: no
    publish options, as the documented snippets do)."""
    if kind == "audio":
        audio = rtc.AudioSource(16000, 1)
        await audio.capture_frame(rtc.AudioFrame(bytes(320), 16000, 1, 160))
        track: rtc.LocalTrack = rtc.LocalAudioTrack.create_audio_track(f"{kind}-{source}", audio)
    else:
        video = rtc.VideoSource(64, 64)
        frame = np.zeros(64 * 64 * 4, dtype=np.uint8).tobytes()
        video.capture_frame(rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA, frame))
        track = rtc.LocalVideoTrack.create_video_track(f"{kind}-{source}", video)
    wanted = SOURCES[source]
    publish = (
        room.local_participant.publish_track(track)
        if wanted is None
        else room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=wanted))
    )
    try:
        publication = await asyncio.wait_for(publish, PUBLISH_WITHIN)
    except Exception:  # the SDK's timeout or refusal, or ours
        return False
    expected = rtc.TrackSource.SOURCE_UNKNOWN if wanted is None else wanted
    assert publication.source == expected
    return True


async def _published_on_server(
    server: LiveKitDevServer, room: str, name: str, *, within: float
) -> bool:
    """Whether the server lists the caller's track ``name`` within ``within`` seconds (a track
    is listed once its media arrives, a moment after the publication completes)."""
    options = server.options
    async with LiveKitAPI(options.url, options.api_key, options.api_secret) as lk:
        for _ in range(max(1, int(within / 0.2))):
            listed = await lk.room.list_participants(ListParticipantsRequest(room=room))
            if name in {
                t.name for p in listed.participants if p.identity == "user" for t in p.tracks
            }:
                return True
            await asyncio.sleep(0.2)
    return False


@pytest.mark.parametrize(
    ("kind", "source", "allowed"),
    [
        ("audio", "none", True),
        ("audio", "microphone", True),
        ("video", "camera", False),
        ("video", "screen_share", False),
        ("audio", "screen_share_audio", False),
        # The grant names sources, not kinds: a video track of no source passes LiveKit.
        # The engine subscribes to audio only, so it is never received (docs/security.md).
        ("video", "none", True),
    ],
    ids=lambda v: str(v),
)
async def test_the_caller_may_publish_its_microphone_only(
    livekit_server: LiveKitDevServer, caller: rtc.Room, kind: str, source: str, allowed: bool
) -> None:
    accepted = await _publish(caller, kind, source)
    assert accepted is allowed, (kind, source)
    # A refused track was given PUBLISH_WITHIN already: one look at the server is enough.
    listed = await _published_on_server(
        livekit_server, caller.name, f"{kind}-{source}", within=5.0 if allowed else 0.0
    )
    assert listed is allowed
