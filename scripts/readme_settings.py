"""Rewrite the README's configuration table from ``thinnest.config.Settings``."""

from __future__ import annotations

import re
from pathlib import Path

from thinnest.config import Settings


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()
        shown = "—" if default in (None, {}) else f"`{default}`"
        description = " ".join((field.description or "").split())
        rows.append(f"| `THINNEST_{name.upper()}` | {shown} | {description} |")
    return "\n".join(rows)


def main() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    text = re.sub(r"<!-- settings:start -->.*?<!-- settings:end -->",
                  f"<!-- settings:start -->\n{table()}\n<!-- settings:end -->", text,
                  flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    main()
