"""The static checks stay in CI: ``make test`` (what ``.ci/run`` runs) starts with
``scripts/check.sh`` (ruff format, ruff, mypy over ``src``), and the test setup installs
the pinned, hash-checked mypy that it runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).parents[1]


def _commands(script: Path) -> list[str]:
    """The script's command lines: no comments, blanks, shell options, echoes or assignments."""
    lines = [line.strip() for line in script.read_text().splitlines()]
    return [
        line
        for line in lines
        if line
        and not line.startswith(("#", "set ", "cd ", "echo ", "export "))
        and not re.fullmatch(r"[A-Za-z_]+=\S*", line)  # an assignment
    ]


def _recipe(target: str) -> tuple[list[str], list[str]]:
    """A Makefile target's prerequisites and recipe lines."""
    text = (REPO / "Makefile").read_text()
    match = re.search(rf"^{target}:(.*)\n((?:\t.*\n)*)", text, re.MULTILINE)
    assert match, f"no `{target}` target in the Makefile"
    return match.group(1).split(), [line.strip() for line in match.group(2).splitlines()]


def test_ci_runs_make_test() -> None:
    assert "make test" in _commands(REPO / ".ci" / "run")


def test_make_test_runs_the_checks_before_any_test() -> None:
    prerequisites, recipe = _recipe("test")
    assert prerequisites == ["setup-test"]
    assert recipe == ["bash scripts/test.sh"]
    commands = _commands(REPO / "scripts" / "test.sh")
    assert commands[0] == "bash scripts/check.sh", commands
    assert all("pytest" in c for c in commands[1:]), commands


def test_make_check_runs_the_one_definition_of_the_checks() -> None:
    assert _recipe("check")[1] == ["bash scripts/check.sh"]
    commands = _commands(REPO / "scripts" / "check.sh")
    assert commands == [
        '"$BIN/ruff" format --check src tests',
        '"$BIN/ruff" check src tests',
        '"$BIN/mypy" src',
    ]


def test_the_test_setup_installs_the_pinned_mypy_with_hashes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    pin = next(req for req in dev if req.startswith("mypy=="))
    lock = (REPO / "requirements" / "dev.lock").read_text()
    block = re.search(
        rf"^{re.escape(pin)} \\\n((?:    --hash=sha256:[0-9a-f]{{64}}.*\n)+)", lock, re.M
    )
    assert block, f"{pin} is not pinned with hashes in requirements/dev.lock"
    # setup.sh --test syncs the virtualenv to exactly that lock (and the piper one it adds),
    # hash-checked.
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "LOCKS=(requirements/dev.lock)" in setup
    assert re.search(r'uv" pip sync .*--require-hashes .*"\$\{LOCKS\[@\]\}"', setup)
    # The pydantic plugin types the models' constructors (Settings(), AgentConfig(...)).
    assert "pydantic.mypy" in pyproject["tool"]["mypy"]["plugins"]
