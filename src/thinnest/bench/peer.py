"""The peer of the latency benchmark: a plain livekit-agents ``AgentSession``, default settings.

Run as ``python -m thinnest.bench.peer`` (the bench stack starts it). It registers with
LiveKit as agent ``thinnest-bench-peer``; each dispatch's metadata is JSON with
``providers`` (as in an agent's config), ``instructions`` and ``greeting``. The provider
objects come from our registry, so both sides run the very same models with the same
options, and each job process is prewarmed like ours (default models loaded, the LLM's
prompt cache filled). What differs is only what the voice engine adds around the
session: our ``AgentSession`` settings (preemptive generation, interruption handling), the
data channel, the store, the call lifecycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from livekit.agents import Agent, AgentSession, JobContext, JobProcess, llm

from thinnest.config import get_settings
from thinnest.contracts import events
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig, Providers
from thinnest.contracts.events import LATENCY_KEYS
from thinnest.engine.providers import ProviderCache
from thinnest.engine.warmup import prewarm
from thinnest.engine.worker import build_server

AGENT_NAME = "thinnest-bench-peer"
log = logging.getLogger("thinnest.bench.peer")


def _prewarm(proc: JobProcess) -> None:
    prewarm(proc)  # the same warm start as our worker's job processes


async def _entrypoint(ctx: JobContext) -> None:
    meta: dict[str, Any] = json.loads(ctx.job.metadata or "{}")
    cache: ProviderCache = ctx.proc.userdata["providers"]
    config = AgentConfig(
        name="peer",
        providers=Providers.model_validate(meta.get("providers", {})),
        instructions=meta.get("instructions") or AgentConfig.model_fields["instructions"].default,
    )
    built = {kind: cache.for_agent(kind, config) for kind in PROVIDER_KINDS}
    await ctx.connect()
    session: AgentSession = AgentSession(
        stt=built["stt"],
        llm=built["llm"],
        tts=built["tts"],
        vad=built["vad"],
        turn_detection=built["turn_detection"],
    )
    # Instrumentation only (no behaviour): the same per-turn metrics events our engine
    # sends, so the bench can show the peer's breakdown next to ours.
    session.on("conversation_item_added", lambda ev: _publish_metrics(ctx, ev))
    await session.start(agent=Agent(instructions=config.instructions), room=ctx.room)
    greeting = meta.get("greeting")
    if greeting:
        session.say(greeting)


def _publish_metrics(ctx: JobContext, ev: Any) -> None:
    item = ev.item
    if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
        return
    report = dict(item.metrics or {})
    latency = {
        ours: float(value)
        for theirs, ours in LATENCY_KEYS.items()
        if isinstance(value := report.get(theirs), int | float)
    }
    if latency:
        message = events.metrics(latency, role="agent" if item.role == "assistant" else "user")
        task = asyncio.get_running_loop().create_task(
            ctx.room.local_participant.publish_data(
                message.encode(), reliable=True, topic=events.TOPIC
            )
        )
        _pending.add(task)
        task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[Any]] = set()


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO)
    server = build_server(
        settings, setup_fnc=_prewarm, entrypoint_fnc=_entrypoint, agent_name=AGENT_NAME
    )
    # The bench stack waits for the same line as for our worker.
    server.on("worker_registered", lambda *_: log.info("worker live: first heartbeat stored"))
    asyncio.run(server.run(devmode=False))


if __name__ == "__main__":
    main()
