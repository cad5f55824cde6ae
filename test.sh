#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, tests (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== pytest" && python -m pytest "$@"
