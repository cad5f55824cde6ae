#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, types, tests (unit and end to end).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
# Private PostgreSQL and Redis servers for the shared-store tests (unless given), stopped on exit.
if [ -z "${BOTCORE_TEST_POSTGRES_URL:-}${BOTCORE_TEST_REDIS_URL:-}" ]; then
  if services="$(scripts/services.sh start)"; then
    eval "$services"
    trap 'scripts/services.sh stop' EXIT
  elif [ "${CI:-}" = true ]; then
    exit 1
  else
    echo "== no PostgreSQL/Redis servers: their tests will be skipped" >&2
  fi
fi
echo "== pytest" && python -m pytest "$@"
