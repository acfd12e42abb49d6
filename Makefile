# The two commands of the README: `make dev` (start everything) and `make test` (run all tests).
.PHONY: dev test check setup setup-test lint lock

dev: setup
	.venv/bin/thinnest dev

# scripts/test.sh runs `check` first, then the suites.
test: setup-test
	bash scripts/test.sh

# ruff format --check, ruff check, mypy over src (scripts/check.sh defines them).
check:
	bash scripts/check.sh

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

lint: check

# Re-pin after changing pyproject.toml dependencies (needs the registry).
lock:
	bash scripts/lock.sh
