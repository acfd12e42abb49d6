"""Settings: safe defaults in dev, refusal of placeholder secrets in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinnest.config import Settings
from thinnest.errors import ConfigError

pytestmark = pytest.mark.unit


def test_dev_defaults_are_loopback(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.resolved_public_base_url == "http://127.0.0.1:8000"
    assert s.websocket_url("session_x") == "ws://127.0.0.1:8000/ws/session_x"
    assert s.resolved_public_livekit_url == "ws://127.0.0.1:7880"
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'thinnest.db').resolve()}"
    with pytest.raises(ConfigError, match="thinnest dev"):
        s.livekit_credentials()


def test_public_urls_follow_https(tmp_path: Path) -> None:
    s = Settings(
        data_dir=tmp_path,
        public_base_url="https://voice.example.com/",
        livekit_url="https://lk.example.com",
    )
    assert s.websocket_url("session_1") == "wss://voice.example.com/ws/session_1"
    assert s.resolved_public_livekit_url == "wss://lk.example.com"


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(None, id="missing"),
        pytest.param("secret", id="placeholder"),
        pytest.param("short-secret", id="short"),
    ],
)
def test_production_refuses_weak_livekit_secrets(tmp_path: Path, secret: str | None) -> None:
    with pytest.raises(ValueError, match="THINNEST_LIVEKIT_API"):
        Settings(
            data_dir=tmp_path, env="production", livekit_api_key="APIk", livekit_api_secret=secret
        )


def test_environment_variables_are_read(tmp_path: Path) -> None:
    import os

    os.environ["THINNEST_API_PORT"] = "9123"  # restored by the clean_environ fixture
    assert Settings(data_dir=tmp_path).api_port == 9123


def test_interruption_settings_reach_the_session_turn_handling(tmp_path: Path) -> None:
    from thinnest.engine.session import turn_handling

    settings = Settings(
        data_dir=tmp_path, interruption_min_duration=0.3, false_interruption_timeout=0.8
    )
    interruption = turn_handling(settings, "vad")["interruption"]
    assert interruption["min_duration"] == 0.3
    assert interruption["false_interruption_timeout"] == 0.8
    assert interruption["resume_false_interruption"] is True
    with pytest.raises(ValueError, match="interruption_min_duration"):
        Settings(data_dir=tmp_path, interruption_min_duration=0)
