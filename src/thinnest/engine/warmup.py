"""Warming up: the models loaded before any call, and the LLM's prompt read ahead of answers.

``prewarm`` runs when a job process starts (before any call), so the models are loaded once
and every call in that process starts warm. ``prefill`` has a local LLM read a call's own
prompt while the caller hears the greeting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from livekit.agents import JobProcess, llm, tokenize
from livekit.agents.voice.speech_handle import SpeechHandle

from thinnest.config import get_settings
from thinnest.contracts.agent import AgentConfig
from thinnest.engine import priority
from thinnest.engine.prompt import render_instructions
from thinnest.engine.providers import ProviderCache
from thinnest.engine.tools import end_call_tool, ssl_context
from thinnest.log import logger
from thinnest.providers import Prefillable
from thinnest.providers.modelservice import warm_clients
from thinnest.store.db import Database

__all__ = ["prefill", "prewarm"]

log = logger.getChild("engine")


def prewarm(proc: JobProcess) -> None:
    """Load the default agent's models into this job process, before any call."""
    settings = get_settings()
    priority.lower_for_prewarm(settings.worker_prewarm_nice)
    cache = ProviderCache(settings)
    default = AgentConfig(name="default")
    cache.warm(default)
    if not settings.models_url:
        # Reading the default system prompt and tools fills the LLM's prompt cache (the local
        # llama reads it without answering), so a first answer does not pay for it (seconds).
        # The shared LLM server keeps its own cache warm: a job process asks it nothing.
        llm_obj = cache.for_agent("llm", default)
        prompt = render_instructions(default, {}, speech_rules=settings.speech_rules)
        warmer = threading.Thread(target=lambda: asyncio.run(_warm_llm(llm_obj, prompt)))
        warmer.start()
        warmer.join(60)
    ssl_context()  # the tools' TLS context: loading the CA bundle would stall a call's start
    warm_clients()  # the model service's clients: their TLS context, the SDK's lazy modules
    # livekit-agents' transcript synchronizer builds its hyphenation table on first use: at
    # the greeting, 0.15-0.25 s of blocked event loop (logged as such). Built here instead.
    tokenize.basic.hyphenate_word("prewarm")
    proc.userdata["providers"] = cache
    proc.userdata["database"] = Database(settings.resolved_database_url)


async def _warm_llm(model: llm.LLM, instructions: str) -> None:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=instructions)
    ctx.add_message(role="user", content="Hello?")
    tools: list[llm.Tool] = [end_call_tool(lambda _g: None, _ignore)]
    try:
        if isinstance(model, Prefillable):  # reading the prompt is the warm-up; no answer
            await model.prefill(ctx, tools)
            return
        async with model.chat(chat_ctx=ctx, tools=tools) as s:
            async for _chunk in s:
                pass
    except Exception as exc:  # a cloud LLM without network, say: warming is optional
        log.info("LLM warm-up skipped: %r", exc)


async def prefill(
    model: object, instructions: str, tools: Sequence[llm.Tool], greeting: SpeechHandle | None
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
