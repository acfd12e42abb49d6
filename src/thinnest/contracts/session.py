"""A session's status and why its call ended: the values the store keeps, the API returns and
the engine sends in ``call_ended``. Both are ``str`` enums, equal to their JSON spelling."""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    """Where a session is: ``starting`` (stored, room being created), ``active`` (the caller
    may join), or final: ``ended`` (a call that ended normally), ``error`` (the call failed
    while it ran), ``failed`` (it never started: LiveKit could not create its room)."""

    STARTING = "starting"
    ACTIVE = "active"
    ENDED = "ended"
    ERROR = "error"
    FAILED = "failed"


#: Statuses a session never leaves.
FINAL_STATUSES = frozenset({SessionStatus.ENDED, SessionStatus.ERROR, SessionStatus.FAILED})
#: Statuses of a session whose call may still be going on.
OPEN_STATUSES = (SessionStatus.STARTING, SessionStatus.ACTIVE)


class EndReason(StrEnum):
    """Why a call ended, as sent in ``call_ended.reason`` and stored as the end reason."""

    USER_LEFT = "user_left"  # the caller left the room (or hung up through a server)
    AGENT_ENDED = "agent_ended"  # the agent ended the call (its end_call tool)
    MAX_DURATION = "max_duration"  # the session's max_duration passed
    ENDED_BY_API = "ended_by_api"  # POST /voice/sessions/{id}/end
    NO_SHOW = "no_show"  # the caller never joined
    ROOM_CLOSED = "room_closed"  # the room was closed under the call
    ERROR = "error"  # the call failed
    #: Stored only: the session never started (status ``failed``); no call_ended is sent.
    LIVEKIT_UNAVAILABLE = "livekit_unavailable"


#: The reasons a ``call_ended`` event may carry.
CALL_END_REASONS = tuple(r for r in EndReason if r is not EndReason.LIVEKIT_UNAVAILABLE)
#: Reasons the API may give in an end control message; any other reads as ``ended_by_api``.
CONTROL_END_REASONS = (EndReason.ENDED_BY_API, EndReason.USER_LEFT)


def status_after(reason: EndReason | str) -> SessionStatus:
    """The final status of a call that ended for ``reason``."""
    return SessionStatus.ERROR if reason == EndReason.ERROR else SessionStatus.ENDED
