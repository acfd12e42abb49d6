"""The job entry of the voice engine: one call, from the dispatch to the room's deletion.

``entrypoint`` reads the dispatch metadata, joins the room, builds the agent's
``AgentSession`` from the job process's providers (:mod:`thinnest.engine.providers`), waits
for the caller (a caller who never comes is a no-show), greets, and waits for the call to
end: the caller leaving, the agent's ``end_call``, ``max_duration``, or the API's end sent on
the control topic. The job process was prewarmed by :func:`thinnest.engine.warmup.prewarm`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import AutoSubscribe, JobContext, llm
from livekit.agents.voice.room_io import RoomOptions

from livekit import rtc
from thinnest.config import get_settings
from thinnest.contracts.dispatch import USER_IDENTITY, DispatchMetadata
from thinnest.contracts.events import CONTROL_TOPIC, end_reason
from thinnest.contracts.session import CALL_END_REASONS, EndReason
from thinnest.engine import priority
from thinnest.engine.call import Call
from thinnest.engine.persistence import CallStore
from thinnest.engine.prompt import render_instructions
from thinnest.engine.providers import ProviderCache
from thinnest.engine.recording import keep_recording
from thinnest.engine.session import agent_session
from thinnest.engine.spoken import SpeakingAgent
from thinnest.engine.tools import end_call_tool, http_function_tool, tool_client
from thinnest.engine.tracing import CallTracing
from thinnest.engine.tracks import hear_unlabelled_audio
from thinnest.engine.warmup import prefill
from thinnest.log import logger
from thinnest.store.db import Database

__all__ = ["entrypoint"]

log = logger.getChild("engine")


async def entrypoint(ctx: JobContext) -> None:
    settings = get_settings()
    priority.restore_for_call(settings.worker_prewarm_nice)
    meta = DispatchMetadata.parse(ctx.job.metadata)
    config = meta.agent
    cache: ProviderCache = ctx.proc.userdata.get("providers") or ProviderCache(settings)
    database: Database = ctx.proc.userdata.get("database") or Database(
        settings.resolved_database_url
    )
    store = CallStore(database, meta.session_id)
    tracing = CallTracing.start(settings, meta)  # before the session makes its first span
    # Watched from before the connect: a caller who hangs up while the call is being set up
    # (before the session starts watching them) has left, whatever comes next.
    caller_left = asyncio.Event()
    ctx.room.on(
        "participant_disconnected",
        lambda p: caller_left.set() if p.identity == USER_IDENTITY else None,
    )

    # Audio only: a caller's video track is never received (docs/security.md, "Caller tracks").
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    hear_unlabelled_audio(ctx.room, USER_IDENTITY)
    await cache.load(config)
    session = agent_session(settings, cache.for_call(config))
    call = Call(
        room=ctx.room,
        meta=meta,
        session=session,
        store=store,
        max_failures=settings.provider_max_failures,
    )
    http = tool_client(settings)
    tools: list[llm.Tool] = [
        http_function_tool(t, settings=settings, client=http, on_call=call.on_tool_call)
        for t in config.tools
    ]
    tools.append(
        end_call_tool(
            lambda goodbye: call.request_end(EndReason.AGENT_ENDED, say=goodbye), call.on_tool_call
        )
    )
    instructions = render_instructions(config, meta.context, speech_rules=settings.speech_rules)
    agent = SpeakingAgent(instructions=instructions, tools=[*tools])  # no tool syntax spoken

    async def cleanup(reason: str) -> None:
        # A job shut down for any other cause (its room was closed under it) ends here.
        await call.end(EndReason(reason) if reason in CALL_END_REASONS else EndReason.ROOM_CLOSED)
        watcher.cancel()
        await http.aclose()
        if meta.recording:
            await keep_recording(ctx, session, store, settings, meta.session_id)
        if tracing is not None:  # last: the call's spans have ended
            await tracing.aclose()

    def on_data(packet: rtc.DataPacket) -> None:
        # Only the server (no participant) may end the call this way: the API's end route.
        if packet.topic == CONTROL_TOPIC and packet.participant is None:
            call.request_end(end_reason(packet.data))

    async def watch_caller() -> None:
        await caller_left.wait()
        call.request_end(EndReason.USER_LEFT)

    ctx.room.on("data_received", on_data)
    watcher = asyncio.create_task(watch_caller())
    ctx.add_shutdown_callback(cleanup)
    call.attach()
    if not await _wait_for_caller(ctx, call, settings.no_show_timeout):
        if call.reason is None:
            log.warning("session %s: the caller never joined", meta.session_id)
            await call.end(EndReason.NO_SHOW)
        await call.ended.wait()
        ctx.delete_room()
        ctx.shutdown(call.reason or "no_show")
        return
    record: Any = (
        {"audio": True, "traces": False, "logs": False, "transcript": False}
        if meta.recording
        else False
    )
    await session.start(
        agent=agent,
        room=ctx.room,
        record=record,
        room_options=RoomOptions(participant_identity=USER_IDENTITY, close_on_disconnect=True),
    )
    # The caller may have left (or the API ended the call) while the session started.
    greeting = (
        session.say(config.greeting, allow_interruptions=True)
        if config.greeting and call.reason is None
        else None
    )
    reading = asyncio.create_task(prefill(session.llm, instructions, tools, greeting))
    await call.ended.wait()
    reading.cancel()
    await session.aclose()
    ctx.delete_room()
    ctx.shutdown(call.reason or "ended")


async def _wait_for_caller(ctx: JobContext, call: Call, within: float) -> bool:
    """Whether the caller joined within ``within`` seconds (False: a no-show, or the call
    was ended before, by the API)."""
    joined = asyncio.ensure_future(ctx.wait_for_participant(identity=USER_IDENTITY))
    ended = asyncio.ensure_future(call.ended.wait())
    try:
        await asyncio.wait({joined, ended}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (joined, ended):
            task.cancel()
    return joined.done() and not joined.cancelled() and call.reason is None
