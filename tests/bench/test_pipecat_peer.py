"""When the latency bench runs the Pipecat peer, and what it says when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinnest.bench import pipecat_peer
from thinnest.bench.latency import LatencyOptions, _pipecat_python
from thinnest.errors import ConfigError, UnavailableError


@pytest.fixture
def no_peer_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pipecat_peer, "DEFAULT_VENV", tmp_path / "absent")
    monkeypatch.delenv("THINNEST_PIPECAT_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_peer_is_skipped_by_default_and_an_error_when_asked_for(
    no_peer_venv: Path,
) -> None:
    skipped: dict[str, str] = {}
    assert _pipecat_python(LatencyOptions(stacks=("fixed",)), skipped) is None
    assert "scripts/setup.sh --peers" in skipped["pipecat"]
    with pytest.raises(UnavailableError, match="setup.sh --peers"):
        _pipecat_python(LatencyOptions(stacks=("fixed",), pipecat=True), {})
    assert _pipecat_python(LatencyOptions(pipecat=False), skipped := {}) is None
    assert skipped == {}


def test_peer_runs_on_the_fixed_stack_only(no_peer_venv: Path) -> None:
    python = no_peer_venv / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    skipped: dict[str, str] = {}
    options = LatencyOptions(stacks=("fixed",), pipecat_python=python)
    assert _pipecat_python(options, skipped) == python and skipped == {}
    offline = LatencyOptions(stacks=("offline",), pipecat_python=python)
    assert _pipecat_python(offline, skipped) is None
    assert "fixed stack only" in skipped["pipecat"]
    with pytest.raises(ConfigError, match="--stack fixed"):
        _pipecat_python(LatencyOptions(stacks=("offline",), pipecat=True), {})
