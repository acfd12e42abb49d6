"""The README and docs stay true: every setting documented, links that resolve inside the
repository, the curl's variables explained, the shipped model named, the benchmarks'
summary complete, and no document denying a command that exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer

from thinnest.cli import app
from thinnest.config import Settings
from thinnest.providers.models import MODELS

pytestmark = pytest.mark.unit

REPO = Path(__file__).parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))


def test_readme_documents_every_setting() -> None:
    readme = README.read_text()
    missing = [n for n in Settings.model_fields if f"`THINNEST_{n.upper()}`" not in readme]
    assert missing == [], "run: .venv/bin/python scripts/readme_settings.py"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(doc: Path) -> None:
    """A user has the repository, not the project's shared notes next to it."""
    text = doc.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO) and path.exists(), f"{doc.name}: {target}"


def test_every_variable_in_the_readmes_commands_is_set_before_it_is_used() -> None:
    text = README.read_text()
    blocks = re.finditer(r"```bash\n(.*?)```", text, re.S)
    for block in blocks:
        for var in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", block.group(1)):
            before = text[: block.start() + block.group(1).index(f"${var}") + 8]
            assert re.search(rf"\b{var}=", before), f"${var} is used before it is set"


def test_the_status_names_the_shipped_llm() -> None:
    status = README.read_text().split("**Status.**", 1)[1].split("\n\n", 1)[0]
    llm = next(name for name in MODELS if name.startswith("qwen"))
    family = llm.removesuffix("-q4_k_m")  # qwen2.5-coder-0.5b-instruct
    assert family in status.lower().replace("\n> ", " "), status


def _commands(group: click.Group, prefix: str = "thinnest") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        found.add(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found |= _commands(command, f"{prefix} {name}")
    return found


COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


def test_the_benchmarks_open_with_a_one_screen_summary_of_every_bench() -> None:
    text = (REPO / "docs" / "benchmarks.md").read_text()
    first = text.split("\n## ", 2)[1]
    assert first.startswith("Summary"), first[:80]
    assert len(first.splitlines()) <= 60, "the summary should fit on one screen"
    for command in sorted(c for c in COMMANDS if c.startswith("thinnest bench ")):
        assert f"`{command}" in first, f"{command} is missing from the summary"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_no_document_denies_a_command_that_exists(doc: Path) -> None:
    text = re.sub(r"\s+", " ", doc.read_text())
    for denied in re.findall(r"\bno `(thinnest [a-z ]+?)`", text):
        assert denied not in COMMANDS, f"{doc.name} says there is no `{denied}`"
