#!/usr/bin/env bash
# Runs every check: the static checks (scripts/check.sh: ruff format, ruff, mypy), the whole
# suite on SQLite, then every suite that touches the database (API, store, voice engine)
# again on a real PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/check.sh
echo "== pytest (SQLite)"
pytest "$@"
echo "== pytest (PostgreSQL)"
THINNEST_TEST_DATABASE=postgresql pytest tests/api tests/store tests/engine tests/gateway "$@"
