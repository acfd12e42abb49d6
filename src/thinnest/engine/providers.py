"""An agent's providers as one call gets them: built once per process, the agent's language
applied.

:class:`ProviderCache` builds the livekit-agents object of each provider the first time a
call of the process names it with those options; every later call shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from dataclasses import dataclass
from typing import Any

from thinnest.config import Settings
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig, ProviderChoice
from thinnest.engine import clauses
from thinnest.errors import ConfigError
from thinnest.providers import ConversationAware, registry

__all__ = ["CallProviders", "ProviderCache", "with_language"]


@dataclass(frozen=True)
class CallProviders:
    """The provider objects of one call, as its ``AgentSession`` takes them.

    Attributes:
        stt: speech to text, with this call's own conversation state where it keeps one.
        llm: the language model.
        tts: text to speech, a sentence-at-a-time one behind the first-clause cut
            (:func:`thinnest.engine.clauses.for_session`).
        vad: voice activity detection.
        turn_detection: the end-of-turn detector.
    """

    stt: Any
    llm: Any
    tts: Any
    vad: Any
    turn_detection: Any


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

    def for_call(self, config: AgentConfig) -> CallProviders:
        """The agent's providers as one call's session takes them (built by :meth:`load`)."""
        speech_to_text = self.for_agent("stt", config)
        if isinstance(speech_to_text, ConversationAware):
            speech_to_text = speech_to_text.for_call()
        return CallProviders(
            stt=speech_to_text,
            llm=self.for_agent("llm", config),
            tts=self.tts_for_session(config),
            vad=self.for_agent("vad", config),
            turn_detection=self.for_agent("turn_detection", config),
        )


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
