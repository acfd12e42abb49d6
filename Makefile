# The two commands of the README: `make dev` (start everything) and `make test` (run all tests).
.PHONY: dev test setup setup-test lint lock

dev: setup
	.venv/bin/thinnest dev

test: setup-test
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

lint:
	.venv/bin/ruff check src tests
	.venv/bin/ruff format --check src tests

# Re-pin after changing pyproject.toml dependencies (needs the registry).
lock:
	bash scripts/lock.sh
