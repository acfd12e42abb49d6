"""A call whose agent needs providers the job process has not built loads them off its loop."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from thinnest.config import Settings
from thinnest.contracts.agent import PROVIDER_KINDS, AgentConfig, ProviderChoice, Providers
from thinnest.engine.providers import ProviderCache
from thinnest.providers import registry
from thinnest.providers.registry import Provider

PLUGIN = "tests.engine.probe_plugin"


class _ProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def test_load_imports_plugins_on_the_loop_and_builds_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_on: list[threading.Thread] = []

    def factory(_options: Any, _settings: Settings) -> object:
        # As a livekit plugin would: its module must already be imported (registered).
        assert PLUGIN in sys.modules
        built_on.append(threading.current_thread())
        return object()

    registry.names("tts")  # the built-ins are registered before the probe joins them
    probe = Provider("tts", "probe", _ProbeOptions, factory, plugins=(PLUGIN,))
    monkeypatch.setitem(registry._registry, ("tts", "probe"), probe)
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    config = AgentConfig(
        name="not the default",
        providers=Providers(
            stt=ProviderChoice(name="whisper", options={"model": "tiny.en"}),
            llm=ProviderChoice(name="fixed"),
            tts=ProviderChoice(name="probe"),
            vad=ProviderChoice(name="silero"),
            turn_detection=ProviderChoice(name="livekit", options={"mode": "vad"}),
        ),
    )
    cache = ProviderCache(Settings(data_dir=tmp_path))
    loop_thread = threading.current_thread()

    await cache.load(config)

    assert sys.modules[PLUGIN].IMPORTED_ON is loop_thread
    assert len(built_on) == 1 and built_on[0] is not loop_thread
    # The real Whisper model was hashed and loaded there too; the session gets the same objects.
    stt = cache.for_agent("stt", config)
    assert type(stt).__name__ == "WhisperSTT"
    await cache.load(config)  # nothing left to build
    assert len(built_on) == 1 and cache.for_agent("stt", config) is stt


def _counting(options: type[BaseModel], kind: str, counts: Counter[str]) -> type[BaseModel]:
    """``options`` that count each validation of theirs (refused ones too) as ``kind``."""

    class Counting(options):  # type: ignore[misc, valid-type]
        @model_validator(mode="before")
        @classmethod
        def _count(cls, data: Any) -> Any:
            counts[kind] += 1
            return data

    return Counting


async def test_a_calls_provider_options_are_validated_once_per_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API validated them at save; the engine validates each kind's once for a call (it
    validated this STT's three times and this TTS's four), and the next call of the same
    agent in the process finds them validated."""
    config = AgentConfig(
        name="counted",
        providers=Providers(
            stt=ProviderChoice(name="whisper", options={"model": "tiny.en"}),  # has a language
            llm=ProviderChoice(name="fixed"),
            tts=ProviderChoice(name="fixed"),
            vad=ProviderChoice(name="silero"),
            turn_detection=ProviderChoice(name="livekit", options={"mode": "vad"}),
        ),
    )
    counts: Counter[str] = Counter()
    registry.names("stt")  # the built-ins are registered before their options are swapped
    for kind in PROVIDER_KINDS:
        real = registry.get(kind, config.providers.of(kind).name)
        counting = dataclasses.replace(real, options=_counting(real.options, kind, counts))
        monkeypatch.setitem(registry._registry, (kind, real.name), counting)
    cache = ProviderCache(Settings(data_dir=tmp_path))

    await cache.load(config)  # what a call's job does with its agent's providers
    cache.for_call(config)

    assert counts == dict.fromkeys(PROVIDER_KINDS, 1)
    counts.clear()
    await cache.load(config)  # the same agent's next call
    cache.for_call(config)
    assert all(counts[kind] <= 1 for kind in PROVIDER_KINDS), counts
