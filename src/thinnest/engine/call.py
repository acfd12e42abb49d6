"""One live call: the session's events to the data channel and the store, and its ending.

Every ending (user left, ``end_call``, ``max_duration``, the API's end, a fatal error) goes
through :meth:`Call.end`: say the last line if there is one, send ``call_ended``, finalise
the stored session, close the room. It runs once, whatever triggers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

from livekit.agents import AgentSession, APIConnectionError, APIStatusError, APITimeoutError, llm
from livekit.agents.voice import events

from livekit import rtc
from thinnest.contracts import events as ev_out
from thinnest.contracts.dispatch import DispatchMetadata
from thinnest.contracts.events import LATENCY_KEYS, TOPIC
from thinnest.contracts.session import EndReason, status_after
from thinnest.engine.persistence import CallStore
from thinnest.engine.tools import ToolCallRecord
from thinnest.errors import ProviderConnectionError, ProviderStatusError, ProviderTimeoutError
from thinnest.log import logger
from thinnest.metrics import (
    CALLS_ENDED,
    CALLS_STARTED,
    PROVIDER_ERRORS,
    TOOL_CALLS,
    TURN_LATENCY,
)

log = logger.getChild("engine")

_SAY_TIMEOUT = 30.0


class Call:
    """Wires one ``AgentSession`` to the room's data channel and the store."""

    def __init__(
        self,
        *,
        room: rtc.Room,
        meta: DispatchMetadata,
        session: AgentSession,
        store: CallStore,
        max_failures: int = 3,
    ) -> None:
        self.room = room
        self.meta = meta
        self.session = session
        self.store = store
        self.started = time.monotonic()
        self.reason: EndReason | None = None
        self.ended = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self.max_failures = max_failures
        self.failures = 0  # failed turns in a row (provider errors after their retries)

    # --- plumbing ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, message: ev_out.Event) -> None:
        """Send one event on the data channel; a room that is gone is not an error."""
        if not self.room.isconnected():
            return
        try:
            await self.room.local_participant.publish_data(
                message.encode(), reliable=True, topic=TOPIC
            )
        except Exception as exc:  # the room closing under us
            log.debug("session %s: publish failed: %r", self.meta.session_id, exc)

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started

    # --- events -----------------------------------------------------------------------------
    def attach(self) -> None:
        s = self.session
        s.on("user_input_transcribed", self._on_user_transcript)
        s.on("conversation_item_added", self._on_item)
        s.on("agent_state_changed", self._on_agent_state)
        s.on("error", self._on_error)
        s.on("close", self._on_close)
        CALLS_STARTED.inc()
        self._timer = asyncio.get_running_loop().create_task(self._max_duration())

    def _on_user_transcript(self, ev: events.UserInputTranscribedEvent) -> None:
        if ev.transcript.strip():
            self._spawn(self.publish(ev_out.transcript("user", ev.transcript, final=ev.is_final)))

    def _on_item(self, ev: events.ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        text = (item.text_content or "").strip()
        if not text:
            return
        role: Literal["user", "agent"] = "agent" if item.role == "assistant" else "user"
        report: dict[str, Any] = dict(item.metrics or {})
        latency = {
            ours: float(report[theirs])
            for theirs, ours in LATENCY_KEYS.items()
            if isinstance(report.get(theirs), int | float)
        }
        if role == "agent" and text != self.meta.agent.error_message:
            self.failures = 0  # a real answer: the pipeline works again
        if role == "agent":
            self._spawn(
                self.publish(
                    ev_out.transcript(
                        "agent", text, final=True, item_id=item.id, interrupted=item.interrupted
                    )
                )
            )
        if latency:
            self._spawn(self.publish(ev_out.metrics(latency, role=role)))
            for stage, seconds in latency.items():
                TURN_LATENCY.labels(stage=stage).observe(seconds)
        self._spawn(
            self.store.add_turn(
                role=role,
                text=text,
                interrupted=item.interrupted,
                started_at=report.get("started_speaking_at"),
                ended_at=report.get("stopped_speaking_at"),
                latency=latency,
            )
        )

    def _on_agent_state(self, ev: events.AgentStateChangedEvent) -> None:
        self._spawn(self.publish(ev_out.AgentState(state=ev.new_state)))

    def _on_error(self, ev: events.ErrorEvent) -> None:
        recoverable = getattr(ev.error, "recoverable", True)
        log.warning(
            "session %s: %s error (recoverable=%s): %r",
            self.meta.session_id,
            type(ev.source).__name__,
            recoverable,
            ev.error,
        )
        kind = str(getattr(ev.error, "type", "provider_error")).removesuffix("_error") or "provider"
        final = not recoverable or kind == "stt"
        PROVIDER_ERRORS.labels(
            kind=kind,
            provider=self._provider_name(kind),
            error=_error_class(getattr(ev.error, "error", ev.error)),
            final=str(final).lower(),
        ).inc()
        # A recoverable error is retried, and the retry is the turn's answer; but an STT
        # stream that failed has lost what the caller said (its retry hears only new audio):
        # that turn failed even so.
        if (recoverable and kind != "stt") or self.reason is not None:
            return
        # The provider gave up after its retries: this turn failed. Apologise and listen on
        # (never silence forever); after `max_failures` failed turns in a row, end the call.
        self.failures += 1
        last = self.failures >= self.max_failures
        self._spawn(
            self.publish(
                ev_out.ErrorEvent(
                    code=f"{kind}_failed",
                    message=f"the {kind.upper()} provider failed"
                    + ("; the call is ending" if last else "; the agent asked the user to repeat"),
                )
            )
        )
        if last:
            self.request_end(EndReason.ERROR)
        elif kind != "tts":  # a broken TTS cannot say sorry; the client sees the error event
            self._spawn(self._apologise())

    def _provider_name(self, kind: str) -> str:
        chosen = self.meta.agent.providers
        choice = {"stt": chosen.stt, "llm": chosen.llm, "tts": chosen.tts}.get(kind)
        return choice.name if choice is not None else "unknown"

    async def _apologise(self) -> None:
        with contextlib.suppress(Exception):
            self.session.say(self.meta.agent.error_message, allow_interruptions=True)

    def _on_close(self, ev: events.CloseEvent) -> None:
        reason = {
            events.CloseReason.PARTICIPANT_DISCONNECTED: EndReason.USER_LEFT,
            events.CloseReason.ERROR: EndReason.ERROR,
        }.get(ev.reason, self.reason or EndReason.ROOM_CLOSED)  # the job shut down: the room closed
        self.request_end(reason)

    async def on_tool_call(self, record: ToolCallRecord) -> None:
        TOOL_CALLS.labels(outcome="ok" if record.error is None else "error").inc()
        await self.publish(
            ev_out.tool_called(
                record.name, record.arguments, duration=record.duration, error=record.error
            )
        )
        await self.store.add_tool_call(
            name=record.name,
            arguments=record.arguments,
            result=record.result,
            error=record.error,
            duration=record.duration,
        )

    # --- ending -----------------------------------------------------------------------------
    async def _max_duration(self) -> None:
        await asyncio.sleep(self.meta.max_duration)
        await self.end(EndReason.MAX_DURATION, say=self.meta.agent.closing_message)

    def request_end(self, reason: EndReason, say: str | None = None) -> None:
        """Schedule the call's end (safe from event handlers and tools)."""
        if self.reason is None:
            self._spawn(self.end(reason, say=say))

    async def end(self, reason: EndReason, *, say: str | None = None) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        CALLS_ENDED.labels(reason=str(reason)).inc()
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        if say and self.room.isconnected():
            with contextlib.suppress(Exception):
                self.session.interrupt()
                handle = self.session.say(say, allow_interruptions=False)
                await asyncio.wait_for(handle.wait_for_playout(), _SAY_TIMEOUT)
        await self.publish(ev_out.call_ended(self.duration, reason))
        await self.store.finalize(status=status_after(reason), reason=reason)
        log.info("session %s ended: %s after %.1f s", self.meta.session_id, reason, self.duration)
        self.ended.set()


def _error_class(exc: object) -> str:
    """A provider error's class for the metrics: timeout, status, connection or other."""
    if isinstance(exc, APITimeoutError | ProviderTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, APIStatusError | ProviderStatusError):
        return "status"
    if isinstance(exc, APIConnectionError | ProviderConnectionError):
        return "connection"
    return "other"
