"""The job entry of the voice engine: prewarm models once per process, then run one call.

``prewarm`` runs when a job process starts (before any call), so the models are loaded
once and every call in that process starts warm. ``entrypoint`` reads the dispatch
metadata, builds the agent's ``AgentSession`` from the provider registry, joins the room,
greets, and waits for the call to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
from typing import Any

from livekit.agents import (
    AgentSession,
    APIConnectOptions,
    AutoSubscribe,
    JobContext,
    JobProcess,
    llm,
    tokenize,
)
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.room_io import RoomOptions
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.turn import TurnHandlingOptions

from livekit import rtc
from thinnest.config import Settings, get_settings
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig, ProviderChoice
from thinnest.contracts.dispatch import USER_IDENTITY, DispatchMetadata
from thinnest.contracts.events import CONTROL_TOPIC, end_reason
from thinnest.contracts.session import CALL_END_REASONS, EndReason
from thinnest.engine import clauses, priority
from thinnest.engine.call import Call
from thinnest.engine.persistence import CallStore
from thinnest.engine.prompt import render_instructions
from thinnest.engine.spoken import SpeakingAgent
from thinnest.engine.tools import end_call_tool, http_function_tool, ssl_context, tool_client
from thinnest.engine.tracks import hear_unlabelled_audio
from thinnest.errors import ConfigError
from thinnest.log import logger
from thinnest.providers import ConversationAware, Prefillable, registry
from thinnest.store.db import Database
from thinnest.store.files import private_copy

log = logger.getChild("engine")


class ProviderCache:
    """Provider objects built once per process, keyed by kind, name and options."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, Any] = {}
        self._spoken: dict[str, Any] = {}

    @staticmethod
    def _key(kind: str, choice: ProviderChoice) -> str:
        return f"{kind}:{choice.name}:{json.dumps(choice.options, sort_keys=True)}"

    def get(self, kind: str, choice: ProviderChoice) -> Any:
        key = self._key(kind, choice)
        if key not in self._built:
            self._built[key] = registry.build(
                kind, choice.name, choice.options, settings=self.settings
            )
        return self._built[key]

    @staticmethod
    def choice(kind: str, config: AgentConfig) -> ProviderChoice:
        """The agent's provider of ``kind``, its language applied."""
        choice: ProviderChoice = getattr(config.providers, kind)
        if kind in ("stt", "tts"):
            choice = with_language(kind, choice, config.language)
        return choice

    def for_agent(self, kind: str, config: AgentConfig) -> Any:
        """The provider object of ``kind`` for an agent (its language applied)."""
        return self.get(kind, self.choice(kind, config))

    def tts_for_session(self, config: AgentConfig) -> Any:
        """The agent's TTS as the session gets it: one sentence at a time, the first
        clause of a reply on its own (:mod:`thinnest.engine.clauses`); built once."""
        key = self._key("tts", self.choice("tts", config))
        if key not in self._spoken:
            self._spoken[key] = clauses.for_session(self.for_agent("tts", config))
        return self._spoken[key]

    def warm(self, config: AgentConfig) -> None:
        for kind in PROVIDER_KINDS:
            self.for_agent(kind, config)

    async def load(self, config: AgentConfig) -> None:
        """Build the agent's providers this process has not built yet, off the event loop.

        The prewarmed default config finds everything built. Another one (Whisper base, a
        cloud LLM) has its model files hashed and loaded in a worker thread: on the event
        loop that stalled the call's audio for seconds. Plugins are imported here first,
        on the loop's (main) thread, where they must register.
        """
        for kind in PROVIDER_KINDS:
            choice = self.choice(kind, config)
            if self._key(kind, choice) in self._built:
                continue
            for module in registry.get(kind, choice.name).plugins:
                with contextlib.suppress(ImportError):  # the build names the missing extra
                    importlib.import_module(module)
            await asyncio.to_thread(self.get, kind, choice)


def prewarm(proc: JobProcess) -> None:
    """Load the default agent's models into this job process, before any call."""
    settings = get_settings()
    priority.lower_for_prewarm(settings.worker_prewarm_nice)
    cache = ProviderCache(settings)
    default = AgentConfig(name="default")
    cache.warm(default)
    # Reading the default system prompt and tools fills the LLM's prompt cache (the local
    # llama reads it without answering), so a first answer does not pay for it (seconds).
    llm_obj = cache.get("llm", default.providers.llm)
    warmer = threading.Thread(target=lambda: asyncio.run(_warm_llm(llm_obj, default.instructions)))
    warmer.start()
    warmer.join(60)
    ssl_context()  # the tools' TLS context: loading the CA bundle would stall a call's start
    # livekit-agents' transcript synchronizer builds its hyphenation table on first use: at
    # the greeting, 0.15-0.25 s of blocked event loop (logged as such). Built here instead.
    tokenize.basic.hyphenate_word("prewarm")
    proc.userdata["providers"] = cache
    proc.userdata["database"] = Database(settings.resolved_database_url)


def with_language(kind: str, choice: ProviderChoice, language: str) -> ProviderChoice:
    """The agent's language as the provider's ``language`` option, unless it sets one.

    Tries the code as given (``en-US``), then its base (``en``); a provider that takes
    neither keeps its own default.
    """
    fields = registry.get(kind, choice.name).options.model_fields
    if "language" not in fields or "language" in choice.options:
        return choice
    for code in dict.fromkeys((language, language.split("-")[0])):
        try:
            registry.validate(kind, choice.name, {**choice.options, "language": code})
        except ConfigError:
            continue
        return ProviderChoice(name=choice.name, options={**choice.options, "language": code})
    return choice


async def _warm_llm(model: llm.LLM, instructions: str) -> None:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=instructions)
    ctx.add_message(role="user", content="Hello?")
    tools = [end_call_tool(lambda _g: None, _ignore)]
    try:
        if isinstance(model, Prefillable):  # reading the prompt is the warm-up; no answer
            await model.prefill(ctx, tools)
            return
        async with model.chat(chat_ctx=ctx, tools=tools) as s:
            async for _chunk in s:
                pass
    except Exception as exc:  # a cloud LLM without network, say: warming is optional
        log.info("LLM warm-up skipped: %r", exc)


async def _prefill(
    model: Any, instructions: str, tools: list[llm.Tool], greeting: SpeechHandle | None
) -> None:
    """Have a local LLM read this agent's prompt while the caller hears the greeting.

    The prewarm read the default agent's; another agent's instructions and tools would
    otherwise be read at the caller's first question (≈ 1.4 s of the first answer on 2
    cores). It waits for the greeting to be heard, so its synthesis has the cores first.
    """
    if not isinstance(model, Prefillable):
        return
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=instructions)
    if greeting is not None:
        await greeting.wait_for_playout()
        for item in greeting.chat_items:  # the greeting as far as it was heard
            if item.type == "message":
                ctx.add_message(role="assistant", content=item.text_content or "")
    try:
        await model.prefill(ctx, tools)
    except Exception as exc:  # only a head start: the answer reads the prompt anyway
        log.info("LLM prefill skipped: %r", exc)


async def _ignore(_record: object) -> None:
    return None


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
    speech_to_text = cache.for_agent("stt", config)
    if isinstance(speech_to_text, ConversationAware):
        speech_to_text = speech_to_text.for_call()
    session: AgentSession = AgentSession(
        stt=speech_to_text,
        llm=cache.for_agent("llm", config),
        tts=cache.tts_for_session(config),
        vad=cache.for_agent("vad", config),
        turn_handling=turn_handling(settings, cache.for_agent("turn_detection", config)),
        user_away_timeout=None,
        conn_options=connect_options(settings),
    )
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
    instructions = render_instructions(config, meta.context)
    agent = SpeakingAgent(instructions=instructions, tools=tools)  # no tool syntax spoken

    async def cleanup(reason: str) -> None:
        # A job shut down for any other cause (its room was closed under it) ends here.
        await call.end(EndReason(reason) if reason in CALL_END_REASONS else EndReason.ROOM_CLOSED)
        watcher.cancel()
        await http.aclose()
        if meta.recording:
            await _keep_recording(ctx, session, store, settings, meta.session_id)

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
    prefill = asyncio.create_task(_prefill(session.llm, instructions, tools, greeting))
    await call.ended.wait()
    prefill.cancel()
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
            "min_duration": 0.5,
            "min_words": 0,
            "resume_false_interruption": True,
            "false_interruption_timeout": 1.5,
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


async def _keep_recording(
    ctx: JobContext, session: AgentSession, store: CallStore, settings: Settings, session_id: str
) -> None:
    """Move the session's stereo recording (user left, agent right) into the recordings dir."""
    await session.aclose()
    source = ctx.session_directory / "audio.ogg"
    for _ in range(50):  # the recorder flushes its last block as the session closes
        if source.exists():
            break
        await asyncio.sleep(0.1)
    if not source.exists():
        log.warning("session %s: no recording was produced", session_id)
        return
    target = await asyncio.to_thread(
        private_copy, source, settings.resolved_recordings_dir, f"{session_id}.ogg"
    )
    await store.set_recording(str(target.resolve()))
