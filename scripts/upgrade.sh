#!/usr/bin/env bash
# Move every pin to the newest release that pyproject.toml's ranges allow (uv.lock, and uv itself
# in scripts/uv.txt), install them and run the whole suite on them, so an upgrade is a deliberate,
# tested commit: review `git diff --stat`, then commit uv.lock and scripts/uv.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
scripts/setup.sh uv
# uv first, so the lock is written by the uv that setup.sh will read it with. A new minor series
# of uv (0.x) may change its behaviour: moving to one is a deliberate edit of this range.
echo 'uv>=0.13,<0.14' | .uv/bin/uv pip compile - --quiet --upgrade --universal --generate-hashes \
  --no-annotate --custom-compile-command scripts/upgrade.sh -o scripts/uv.txt
scripts/setup.sh uv
.uv/bin/uv lock --upgrade
exec ./test.sh "$@"
