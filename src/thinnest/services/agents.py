"""Agents: a config is read, merged and checked here once, whoever saves it (the API, the CLI,
the dev stack), so the store only ever holds configs this deployment can run."""

from __future__ import annotations

from typing import Any

import pydantic

from thinnest.config import Settings
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig
from thinnest.errors import ValidationError
from thinnest.providers import registry
from thinnest.services.destinations import refusal_for


def parse(data: Any) -> AgentConfig:
    """An agent config from JSON data; a :class:`ValidationError` names the field at fault."""
    try:
        return AgentConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError.from_pydantic(exc) from exc


def merged(config: AgentConfig, changes: dict[str, Any]) -> AgentConfig:
    """``config`` with ``changes`` (fields of a PATCH) applied, validated as a whole."""
    return parse({**config.model_dump(mode="json"), **changes})


def checked(config: AgentConfig, settings: Settings) -> AgentConfig:
    """What a config model cannot check alone: the server's maximum duration, and each
    provider by the registry (an unknown name, bad options or a missing cloud key is refused
    now, not mid-call). An unset ``max_duration`` becomes the server's default."""
    if config.max_duration is None:
        config = config.model_copy(update={"max_duration": settings.default_max_duration})
    elif config.max_duration > settings.max_call_duration:
        raise ValidationError(
            f"max_duration must be at most {settings.max_call_duration} seconds",
            field="max_duration",
        )
    for kind in PROVIDER_KINDS:
        choice = config.providers.of(kind)
        registry.validate(kind, choice.name, choice.options, settings=settings)
    return config


def warnings(config: AgentConfig, settings: Settings) -> list[str]:
    """What in a valid config will not work here: tool URLs the SSRF guard refuses (judged
    without DNS: address literals and ``localhost``; a name is judged when it is called)."""
    found = []
    for i, tool in enumerate(config.tools):
        problem = refusal_for(tool.url.host or "", settings)
        if problem is not None:
            found.append(f"tools.{i}.url: {tool.name} will not be called: {problem}")
    return found
