"""The ``AgentSession`` of a call: its providers, turn handling and provider timeouts."""

from __future__ import annotations

from typing import Any

from livekit.agents import AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.turn import TurnHandlingOptions

from thinnest.config import Settings
from thinnest.engine.providers import CallProviders

__all__ = ["agent_session", "connect_options", "turn_handling"]


def agent_session(settings: Settings, providers: CallProviders) -> AgentSession:
    """The session of one call with ``providers``; the caller's absence is the room's
    business (``user_away_timeout`` off), provider failures :class:`Call`'s."""
    return AgentSession(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=providers.vad,
        turn_handling=turn_handling(settings, providers.turn_detection),
        user_away_timeout=None,
        conn_options=connect_options(settings),
    )


def turn_handling(settings: Settings, turn_detection: Any) -> TurnHandlingOptions:
    """When the user's turn ends, when the agent may be interrupted, what runs ahead."""
    return TurnHandlingOptions(
        turn_detection=turn_detection,
        # After the end of speech the turn detector's verdict still waits this long (more,
        # up to max_delay, when it thinks the user is mid-thought).
        endpointing={
            "min_delay": settings.endpointing_min_delay,
            "max_delay": settings.endpointing_max_delay,
        },
        # Barge-in is decided on voice activity alone (fast: no wait for the STT); a
        # backchannel ("mm-hmm") is shorter than min_duration and does not cut the agent
        # off, and a noise that yields no words resumes the agent.
        interruption={
            "enabled": True,
            "min_duration": settings.interruption_min_duration,
            "min_words": 0,
            "resume_false_interruption": True,
            "false_interruption_timeout": settings.false_interruption_timeout,
        },
        # The LLM (and, with preemptive_tts, the TTS) start on the final transcript, before
        # the end of turn is confirmed; a changed transcript discards the draft.
        preemptive_generation={"enabled": True, "preemptive_tts": settings.preemptive_tts},
    )


def connect_options(settings: Settings) -> SessionConnectOptions:
    """Timeouts and retries of provider requests. A stalled request fails after
    ``provider_timeout`` and is retried ``provider_retries`` times; then the turn fails and
    :class:`Call` apologises (its own count of failed turns ends the call, so the session's
    count is set out of its way)."""
    options = APIConnectOptions(
        max_retry=settings.provider_retries, retry_interval=0.5, timeout=settings.provider_timeout
    )
    return SessionConnectOptions(
        stt_conn_options=options,
        llm_conn_options=options,
        tts_conn_options=options,
        max_unrecoverable_errors=settings.provider_max_failures + 1,
    )
