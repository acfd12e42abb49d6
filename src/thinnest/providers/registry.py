"""The provider registry: ``(kind, name) -> factory`` for STT, LLM, TTS, VAD and turn detection.

An agent's config names one provider per kind and gives it options. The API validates
them when the agent is saved (:func:`validate`: unknown names, bad options and missing
cloud keys are refused there, never mid-call) and the voice engine builds the
livekit-agents objects from them (:func:`build`).

Providers register through the ``thinnest.providers`` entry-point group: an entry point
loads to a :class:`Provider` or an iterable of them. The built-ins (``thinnest.providers.
builtin:PROVIDERS``) are registered directly as well, so they work from a source checkout
without installed entry-point metadata; a third-party entry point cannot replace a
built-in name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import pydantic
from pydantic import BaseModel

from thinnest.config import Settings, get_settings
from thinnest.contracts.agent import PROVIDER_KINDS, ProviderKind
from thinnest.errors import ConfigError, field_of

__all__ = [
    "ENTRY_POINT_GROUP",
    "Provider",
    "build",
    "get",
    "load_entry_points",
    "names",
    "register",
    "validate",
]

logger = logging.getLogger("thinnest.providers")

ENTRY_POINT_GROUP = "thinnest.providers"


@runtime_checkable
class ConversationAware(Protocol):
    """A provider that keeps state from a call's conversation (the whisper STT's context).

    The engine builds each provider once per process and shares it among calls: such a
    provider hands each call its own view, so one call's words never steer another's.
    """

    def for_call(self) -> Any:
        """This provider for one call, with its own conversation state."""


@runtime_checkable
class Prefillable(Protocol):
    """An LLM that can read a call's fixed prompt ahead of its first answer (the local
    llama: its prompt cache then holds the instructions and tools, so the first answer
    does not pay for reading them). A cloud LLM would be billed for it: it has none."""

    async def prefill(self, chat_ctx: Any, tools: Any) -> None:
        """Read the prompt of ``chat_ctx`` with ``tools`` described, writing nothing."""


@dataclass(frozen=True)
class Provider:
    """One registered provider.

    Attributes:
        kind: which stage it fills.
        name: its name in an agent's config (unique per kind).
        options: pydantic model of its options; should set ``extra="forbid"``.
        factory: builds the livekit-agents object from validated options and settings.
        check: optional save-time check beyond the options model (a cloud key in
            settings, say); raises :class:`ConfigError` whose ``field`` is relative to
            the options (``"api_key"``) or ``None``.
        description: one line for listings.
        plugins: livekit plugin modules the factory imports. A plugin registers itself
            when imported and refuses to outside the main thread: the voice engine imports
            these on its main thread and then builds the provider in a worker thread (model
            files are hashed and loaded there, off the call's event loop).
        remote: builds the provider as a client of the shared model service instead
            (``THINNEST_MODELS_URL`` set): the same options, no model in this process. The
            service itself builds with ``factory`` (its settings have no ``models_url``).
    """

    kind: ProviderKind
    name: str
    options: type[BaseModel]
    factory: Callable[[Any, Settings], Any]
    check: Callable[[Any, Settings], None] | None = None
    description: str = ""
    plugins: tuple[str, ...] = ()
    remote: Callable[[Any, Settings], Any] | None = None


_registry: dict[tuple[str, str], Provider] = {}
_builtin: set[tuple[str, str]] = set()
_loaded = False
_lock = threading.RLock()


def register(provider: Provider, *, replace: bool = False) -> None:
    """Add a provider to the registry.

    Args:
        provider: what to register.
        replace: allow replacing an existing non-built-in provider of the same kind and name.

    Raises:
        ConfigError: the kind is unknown, or the name is taken (and may not be replaced).
    """
    _ensure_loaded()  # a plugin registered early must not take a built-in's name
    _register(provider, replace=replace)


def _register(provider: Provider, *, replace: bool) -> None:
    if provider.kind not in PROVIDER_KINDS:
        raise ConfigError(
            f"provider {provider.name!r} has unknown kind {provider.kind!r}; "
            f"kinds: {', '.join(PROVIDER_KINDS)}"
        )
    key = (provider.kind, provider.name)
    with _lock:
        existing = _registry.get(key)
        if existing is not None and existing is not provider:
            if key in _builtin or not replace:
                raise ConfigError(
                    f"{provider.kind} provider {provider.name!r} is already registered"
                )
        _registry[key] = provider


def get(kind: str, name: str) -> Provider:
    """The provider registered as ``(kind, name)``.

    Raises:
        ConfigError: unknown kind (``field="providers"``) or name
            (``field="providers.<kind>.name"``); the message lists the known ones.
    """
    _ensure_loaded()
    if kind not in PROVIDER_KINDS:
        raise ConfigError(
            f"unknown provider kind {kind!r}; known kinds: {', '.join(PROVIDER_KINDS)}",
            field="providers",
        )
    provider = _registry.get((kind, name))
    if provider is None:
        raise ConfigError(
            f"unknown {kind} provider {name!r}; known {kind} providers: {', '.join(names(kind))}",
            field=f"providers.{kind}.name",
        )
    return provider


def names(kind: str) -> list[str]:
    """The registered provider names of ``kind``, sorted (``[]`` for an unknown kind)."""
    _ensure_loaded()
    return sorted(n for k, n in _registry if k == kind)


def validate(
    kind: str,
    name: str,
    options: Mapping[str, Any] | BaseModel | None = None,
    *,
    settings: Settings | None = None,
) -> BaseModel:
    """Validate a provider choice and its options, as the API does when an agent is saved.

    Args:
        kind: ``stt``, ``llm``, ``tts``, ``vad`` or ``turn_detection``.
        name: the provider's registered name.
        options: its options (``None`` means all defaults).
        settings: where cloud keys are looked up; default :func:`get_settings`.

    Returns:
        The validated options model, to hand to :func:`build` later.

    Raises:
        ConfigError: with ``field`` set to the offending path
            (``providers.stt.name``, ``providers.stt.options.model``, ...) and a sentence
            saying what is allowed.
    """
    provider = get(kind, name)
    prefix = f"providers.{kind}.options"
    if isinstance(options, BaseModel):
        options = options.model_dump()
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"{kind} provider options must be an object", field=prefix)
    try:
        opts = provider.options.model_validate(dict(options or {}))
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = field_of(err["loc"], default="")
        field = field_of(err["loc"], prefix=prefix)
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(provider.options.model_fields) or "none"
            message = f"unknown option {loc!r} of {kind} provider {name!r}; allowed: {allowed}"
        elif loc:
            message = f"invalid option {loc!r} of {kind} provider {name!r}: {err['msg']}"
        else:
            message = f"invalid options of {kind} provider {name!r}: {err['msg']}"
        raise ConfigError(message, field=field) from exc
    if provider.check is not None:
        try:
            provider.check(opts, settings or get_settings())
        except ConfigError as exc:
            exc.field = f"{prefix}.{exc.field}" if exc.field else f"providers.{kind}.name"
            raise
    return opts


def build(
    kind: str,
    name: str,
    options: Mapping[str, Any] | BaseModel | None = None,
    *,
    settings: Settings,
) -> Any:
    """Build the livekit-agents object of a provider.

    Options are validated again (cheap), so a raw dict from the store works too.

    Args:
        kind: the provider's kind.
        name: the provider's name.
        options: options as a dict or the model :func:`validate` returned.
        settings: process settings (keys, models directory).

    Returns:
        An ``stt.STT``, ``llm.LLM``, ``tts.TTS``, ``vad.VAD`` or turn detector.

    Raises:
        ConfigError: as :func:`validate`, or when the provider's extra is not installed
            or its model files are missing or corrupt.
    """
    opts = validate(kind, name, options, settings=settings)
    provider = get(kind, name)
    if settings.models_url and provider.remote is not None:
        return provider.remote(opts, settings)
    return provider.factory(opts, settings)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        from thinnest.providers.builtin import PROVIDERS

        for provider in PROVIDERS:
            _register(provider, replace=False)
            _builtin.add((provider.kind, provider.name))
        _loaded = True
    load_entry_points()


def load_entry_points() -> list[Provider]:
    """Register the providers of installed ``thinnest.providers`` entry points.

    Called on first use of the registry; call it again after installing a plugin into a
    running process. A plugin that fails to load, or names a taken ``(kind, name)``, is
    logged and skipped: it never takes the built-ins down with it.

    Returns:
        The providers newly registered.
    """
    _ensure_loaded()
    added: list[Provider] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
            items = [loaded] if isinstance(loaded, Provider) else list(loaded)
        except Exception:  # a broken plugin must not take the built-ins down with it
            logger.exception("could not load provider entry point %s", ep.value)
            continue
        for provider in items:
            if not isinstance(provider, Provider):
                logger.warning("entry point %s gave %r, not a Provider", ep.value, provider)
                continue
            if _registry.get((provider.kind, provider.name)) is provider:
                continue  # the built-ins' own entry point, or loaded before
            try:
                _register(provider, replace=False)
            except ConfigError as exc:
                logger.warning("provider from entry point %s skipped: %s", ep.value, exc.message)
                continue
            added.append(provider)
    return added
