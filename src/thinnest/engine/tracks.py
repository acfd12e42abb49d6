"""What the engine takes from the caller's tracks: audio only, including a track of no source.

The documented client snippets publish the microphone without options (the browser's
``publishTrack(mediaStreamTrack)``, Python's ``publish_track(track)``), so LiveKit marks the track
``SOURCE_UNKNOWN``; the caller's token allows that source (``thinnest.livekit.tokens``).
livekit-agents' ``RoomIO`` listens only to ``SOURCE_MICROPHONE`` tracks and has no option to
widen that, so :func:`hear_unlabelled_audio` labels the caller's unlabelled *audio* publication as
the microphone where the engine sees it (its local copy of the publication's info; nothing changes
on the server or for other participants). The engine subscribes to audio only
(``AutoSubscribe.AUDIO_ONLY``): a video track of no source, which the grant cannot tell from
audio, is never received, decoded or recorded.
"""

from __future__ import annotations

from livekit import rtc


def _label(publication: rtc.RemoteTrackPublication) -> None:
    if (
        publication.kind == rtc.TrackKind.KIND_AUDIO
        and publication.source == rtc.TrackSource.SOURCE_UNKNOWN
    ):
        # RoomIO reads ``publication.source``, which is this field of the local info copy.
        publication._info.source = rtc.TrackSource.SOURCE_MICROPHONE


def hear_unlabelled_audio(room: rtc.Room, identity: str) -> None:
    """Let the session hear ``identity``'s audio track published without a source.

    Call before the session starts: the handlers run before RoomIO's (registration order), and
    tracks already known are labelled at once.

    Args:
        room: the job's connected room.
        identity: the caller's participant identity (other participants are left alone).
    """

    def on_published(
        publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if participant.identity == identity:
            _label(publication)

    def on_subscribed(
        _track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        on_published(publication, participant)

    room.on("track_published", on_published)
    room.on("track_subscribed", on_subscribed)
    for participant in room.remote_participants.values():
        for publication in participant.track_publications.values():
            on_published(publication, participant)
