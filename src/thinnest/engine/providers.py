"""An agent's providers as one call gets them: options validated once, objects built once.

The API validated the agent's provider options when the agent was saved; the engine receives
them as JSON with each dispatch. :func:`resolve_choice` validates each provider's options once
(the agent's language applied), and :class:`ProviderCache` builds the livekit-agents object
from those validated options, once per process: every call of the process that names the
same provider with the same options shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from thinnest.config import Settings
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig, ProviderChoice, ProviderKind
from thinnest.engine import clauses
from thinnest.errors import ConfigError
from thinnest.providers import ConversationAware, registry

__all__ = ["CallProviders", "ProviderCache", "ValidChoice", "resolve_choice"]

#: The kinds whose provider hears or speaks the agent's language.
_SPOKEN: tuple[ProviderKind, ...] = ("stt", "tts")


@dataclass(frozen=True)
class ValidChoice:
    """A provider choice whose options have been validated by the provider registry.

    Attributes:
        kind: the provider's kind.
        name: its registered name.
        options: the agent's options as given, the agent's language added where it applies.
        validated: the options model :func:`thinnest.providers.registry.validate` returned
            for them; the provider is built from it.
    """

    kind: ProviderKind
    name: str
    options: dict[str, Any]
    validated: BaseModel

    @property
    def key(self) -> str:
        """What identifies the built provider within a process."""
        return f"{self.kind}:{self.name}:{json.dumps(self.options, sort_keys=True)}"


def resolve_choice(
    kind: ProviderKind, choice: ProviderChoice, language: str, *, settings: Settings | None = None
) -> ValidChoice:
    """The provider of ``kind`` with its options validated, the agent's language applied.

    The agent's language becomes the provider's ``language`` option unless the options set
    one: the code as given (``en-US``) if the provider takes it, else its base (``en``); a
    provider that takes neither keeps its own default. Only STT and TTS get the language.

    Raises:
        ConfigError: the options are not valid (see :func:`thinnest.providers.registry.validate`).
    """
    fields = registry.get(kind, choice.name).options.model_fields
    if kind in _SPOKEN and "language" in fields and "language" not in choice.options:
        for code in dict.fromkeys((language, language.split("-")[0])):
            options = {**choice.options, "language": code}
            try:
                validated = registry.validate(kind, choice.name, options, settings=settings)
            except ConfigError:
                continue
            return ValidChoice(kind, choice.name, options, validated)
    options = dict(choice.options)
    validated = registry.validate(kind, choice.name, options, settings=settings)
    return ValidChoice(kind, choice.name, options, validated)


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
    """Provider objects built once per process, keyed by kind, name and options.

    A choice is validated once per process and agent input (the same agent's next call finds
    it resolved); a call's providers are thus validated at most once per kind.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resolved: dict[str, ValidChoice] = {}
        self._built: dict[str, Any] = {}
        self._spoken: dict[str, Any] = {}

    def choice(self, kind: ProviderKind, config: AgentConfig) -> ValidChoice:
        """The agent's provider of ``kind``, validated, its language applied."""
        chosen = config.providers.of(kind)
        language = config.language if kind in _SPOKEN else ""
        key = f"{kind}:{chosen.name}:{language}:{json.dumps(chosen.options, sort_keys=True)}"
        if key not in self._resolved:
            self._resolved[key] = resolve_choice(kind, chosen, language, settings=self.settings)
        return self._resolved[key]

    def build(self, choice: ValidChoice) -> Any:
        """The provider object of ``choice``, built on first use from its validated options."""
        if choice.key not in self._built:
            provider = registry.get(choice.kind, choice.name)
            # The options were validated when the choice was resolved: built from them as is.
            # With shared model services, the provider is their client: no model here.
            factory = provider.factory
            if self.settings.models_url and provider.remote is not None:
                factory = provider.remote
            self._built[choice.key] = factory(choice.validated, self.settings)
        return self._built[choice.key]

    def for_agent(self, kind: ProviderKind, config: AgentConfig) -> Any:
        """The provider object of ``kind`` for an agent (its language applied)."""
        return self.build(self.choice(kind, config))

    def spoken_tts(self, choice: ValidChoice) -> Any:
        """The TTS of ``choice`` as the session gets it: one sentence at a time, the first
        clause of a reply on its own (:mod:`thinnest.engine.clauses`); built once."""
        if choice.key not in self._spoken:
            self._spoken[choice.key] = clauses.for_session(self.build(choice))
        return self._spoken[choice.key]

    def warm(self, config: AgentConfig) -> None:
        """Build all of the agent's providers, here and now."""
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
            if choice.key in self._built:
                continue
            for module in registry.get(kind, choice.name).plugins:
                with contextlib.suppress(ImportError):  # the build names the missing extra
                    importlib.import_module(module)
            await asyncio.to_thread(self.build, choice)

    def for_call(self, config: AgentConfig) -> CallProviders:
        """The agent's providers as one call's session takes them (built by :meth:`load`)."""
        speech_to_text = self.for_agent("stt", config)
        if isinstance(speech_to_text, ConversationAware):
            speech_to_text = speech_to_text.for_call()
        return CallProviders(
            stt=speech_to_text,
            llm=self.for_agent("llm", config),
            tts=self.spoken_tts(self.choice("tts", config)),
            vad=self.for_agent("vad", config),
            turn_detection=self.for_agent("turn_detection", config),
        )
