"""The provider registry: names, option validation with field paths, keys, entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from thinnest.contracts.agent import DEFAULT_PROVIDERS as DEFAULTS
from thinnest.contracts.agent import PROVIDER_KINDS as KINDS
from thinnest.errors import ConfigError
from thinnest.providers import registry
from thinnest.providers.registry import Provider

from .conftest import make_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path)


def test_every_default_is_registered() -> None:
    assert set(DEFAULTS) == set(KINDS)
    for kind, name in DEFAULTS.items():
        assert name in registry.names(kind)
    assert DEFAULTS == {
        "stt": "whisper",
        "llm": "llama",
        "tts": "hibari",
        "vad": "silero",
        "turn_detection": "transcript",
    }


def test_lists_builtin_names_per_kind() -> None:
    assert registry.names("stt") == ["deepgram", "fixed", "google", "whisper"]
    assert registry.names("llm") == ["fixed", "gemini", "llama", "openai"]
    assert registry.names("tts") == ["cartesia", "elevenlabs", "espeak", "fixed", "hibari", "piper"]
    assert registry.names("vad") == ["silero"]
    assert registry.names("turn_detection") == ["livekit", "transcript"]
    assert registry.names("nonsense") == []


def test_rejects_unknown_name_listing_known_ones(settings) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("stt", "whisperx", {}, settings=settings)
    assert err.value.field == "providers.stt.name"
    assert "'whisperx'" in err.value.message
    assert "deepgram, fixed, google, whisper" in err.value.message


def test_rejects_unknown_kind(settings) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("asr", "whisper", {}, settings=settings)
    assert err.value.field == "providers"
    assert "stt, llm, tts, vad, turn_detection" in err.value.message


@pytest.mark.parametrize(
    ("kind", "name", "options", "field", "fragment"),
    [
        ("stt", "whisper", {"model": "large-v3"}, "providers.stt.options.model", "'tiny.en'"),
        ("stt", "whisper", {"modle": "base"}, "providers.stt.options.modle", "allowed: model"),
        (
            "stt",
            "whisper",
            {"model": "tiny.en", "language": "de"},
            "providers.stt.options",
            "only transcribes English",
        ),
        ("tts", "piper", {"speed": 9}, "providers.tts.options.speed", "less than or equal"),
        ("tts", "espeak", {"voice": "en; rm -rf /"}, "providers.tts.options.voice", "pattern"),
        ("llm", "llama", {"temperature": "hot"}, "providers.llm.options.temperature", "number"),
        ("vad", "silero", {"sample_rate": 44100}, "providers.vad.options.sample_rate", "8000"),
        (
            "turn_detection",
            "livekit",
            {"mode": "llm"},
            "providers.turn_detection.options.mode",
            "'model'",
        ),
    ],
    ids=[
        "bad-value",
        "unknown-option",
        "cross-field",
        "out-of-range",
        "pattern",
        "wrong-type",
        "literal",
        "turn-mode",
    ],
)
def test_rejects_bad_options_naming_the_field(
    settings, kind: str, name: str, options: dict, field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate(kind, name, options, settings=settings)
    assert err.value.field == field
    assert fragment in err.value.message


def test_rejects_options_that_are_not_an_object(settings) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("stt", "whisper", ["base"], settings=settings)  # type: ignore[arg-type]
    assert err.value.field == "providers.stt.options"


def test_validate_fills_defaults(settings) -> None:
    opts = registry.validate("stt", "whisper", None, settings=settings)
    assert opts.model_dump() == {
        "model": "auto",
        "language": "en",
        "beam_size": 0,
        "threads": 0,
        "streaming": True,
        "end_silence": 0.4,
        "preflight_silence": 0.15,
        "interim_results": True,
        "interim_interval": 0.7,
        "window": "fit",
        "prompt": "",
        "context": True,
    }
    # a validated model goes through validate/build again unchanged
    assert registry.validate("stt", "whisper", opts, settings=settings) == opts


@pytest.mark.parametrize(
    ("kind", "name", "key"),
    [
        ("stt", "deepgram", "deepgram_api_key"),
        ("stt", "google", "google_api_key"),
        ("llm", "gemini", "google_api_key"),
        ("tts", "elevenlabs", "elevenlabs_api_key"),
        ("tts", "cartesia", "cartesia_api_key"),
    ],
    ids=["deepgram", "google-stt", "gemini", "elevenlabs", "cartesia"],
)
def test_refuses_cloud_provider_without_key_at_save_time(tmp_path: Path, kind, name, key) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate(kind, name, {}, settings=make_settings(tmp_path))
    assert err.value.field == f"providers.{kind}.name"
    assert err.value.code == "provider_key_missing"
    assert f"THINNEST_{key.upper()}" in err.value.message
    registry.validate(kind, name, {}, settings=make_settings(tmp_path, **{key: "k-123"}))


def test_openai_needs_a_key_or_a_custom_endpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        registry.validate("llm", "openai", {"model": "m"}, settings=make_settings(tmp_path))
    assert "THINNEST_OPENAI_API_KEY" in err.value.message
    local = {"model": "qwen", "base_url": "http://127.0.0.1:8080/v1"}
    registry.validate("llm", "openai", local, settings=make_settings(tmp_path))
    registry.validate(
        "llm", "openai", {}, settings=make_settings(tmp_path, openai_api_key="sk-test")
    )


class _EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str = "hi"


def test_third_party_cannot_replace_a_builtin() -> None:
    fake = Provider("stt", "whisper", _EchoOptions, lambda o, s: o)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(fake)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(fake, replace=True)


def test_rejects_registration_of_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown kind"):
        registry.register(Provider("asr", "x", _EchoOptions, lambda o, s: o))  # type: ignore[arg-type]


_PLUGIN = """
from pydantic import BaseModel, ConfigDict

class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str = "hello"

def _build(options, settings):
    return "echo:" + options.word

from thinnest.providers.registry import Provider
PROVIDER = Provider("tts", "echo-plugin", Options, _build)
"""


def test_loads_providers_from_entry_points(tmp_path: Path, settings) -> None:
    (tmp_path / "echo_plugin.py").write_text(_PLUGIN)
    info = tmp_path / "echo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[thinnest.providers]\necho = echo_plugin:PROVIDER\n")
    sys.path.insert(0, str(tmp_path))
    try:
        registry.load_entry_points()
    finally:
        sys.path.remove(str(tmp_path))
    assert "echo-plugin" in registry.names("tts")
    assert registry.build("tts", "echo-plugin", {"word": "x"}, settings=settings) == "echo:x"
    with pytest.raises(ConfigError) as err:
        registry.validate("tts", "echo-plugin", {"words": "x"}, settings=settings)
    assert err.value.field == "providers.tts.options.words"
