#!/usr/bin/env bash
# The whole test suite: lint, types, then every test (two workers: these machines have 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check runner tests
ruff format --check runner tests
mypy runner tests
lint-imports  # the import layers and no circles (pyproject.toml [tool.importlinter])
python -m pytest -n 2 "$@"
