#!/usr/bin/env bash
# The static checks, the one place they are defined: `make check` runs them, and so does
# scripts/test.sh (`make test`, CI) before any test. Formatting, lint, then types.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
echo "== ruff format --check"
"$BIN/ruff" format --check src tests
echo "== ruff check"
"$BIN/ruff" check src tests
echo "== mypy"
"$BIN/mypy" src
