#!/usr/bin/env bash
# Runs every check: lint, the whole suite on SQLite, then every suite that touches the
# database (API, store, voice engine) again on a real PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check src tests
echo "== pytest (SQLite)"
pytest "$@"
echo "== pytest (PostgreSQL)"
THINNEST_TEST_DATABASE=postgresql pytest tests/api tests/store tests/engine tests/gateway "$@"
