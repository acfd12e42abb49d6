"""The README stays true: every setting is in its configuration table."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinnest.config import Settings

pytestmark = pytest.mark.unit


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`THINNEST_{n.upper()}`" not in readme]
    assert missing == [], "run: .venv/bin/python scripts/readme_settings.py"
