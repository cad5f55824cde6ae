#!/usr/bin/env bash
# Install what botcore needs on a Debian/Ubuntu machine: ffmpeg, then exactly the versions in
# uv.lock (every file checked against its hash) in .venv: the application ("run", the default),
# or also the test tools and the example plugins ("test"). Safe to run again, and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-run}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "setup: need root (or sudo) to install: $*" >&2; exit 1; fi; }

apt_packages=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_packages+=(ffmpeg)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
# The tests make throwaway TLS certificates with openssl (the cryptography package would do, but
# python-telegram-bot imports it whenever it is installed: 8 MB more in every bot process).
[ "$want" != test ] || command -v openssl >/dev/null || apt_packages+=(openssl)
# tests/test_deploy.py checks deploy/botcore.service with systemd-analyze verify.
[ "$want" != test ] || command -v systemd-analyze >/dev/null || apt_packages+=(systemd)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "setup: installing ${apt_packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

python3 - <<'PY' || { echo "setup: botcore needs Python 3.11 or newer" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY
# The machine's python3 is the one botcore runs on: uv must never fetch a Python of its own.
python="$(python3 -c 'import sys; print(sys.executable)')"
export UV_PYTHON_DOWNLOADS=never

# uv itself, at the version and hashes of scripts/uv.txt, in a venv of its own (.uv/), so the
# tool that checks the lock's hashes was checked the same way.
uv_key="$(cat scripts/uv.txt; echo "$python")"
if [ ! -x .uv/bin/uv ] || [ "$(cat .uv/.botcore-stamp 2>/dev/null)" != "$uv_key" ]; then
  python3 -m venv --clear .uv
  .uv/bin/python -m pip install -q --require-hashes --no-deps -r scripts/uv.txt
  printf '%s' "$uv_key" >.uv/.botcore-stamp
fi
[ "$want" != uv ] || exit 0  # scripts/upgrade.sh: only the tool, before the lock is rewritten

# Synced again only when the lock, a pyproject.toml, the Python or the mode changed.
stamp=".venv/.botcore-$want"
key="$(cat uv.lock pyproject.toml examples/*/pyproject.toml | sha256sum) $python"
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  if [ "$want" = test ]; then
    # Exactly the lock's test environment: botcore with its test extra, and the example plugins
    # (workspace members), all editable.
    sync=(--extra test --all-packages)
  else
    # The application's packages; --inexact leaves a test environment's extra packages alone.
    # With the extras bot.toml may ask for (the shared stores' drivers, the metrics plugin's
    # prometheus-client): a clone runs whatever it names, unchanged.
    sync=(--inexact --extra metrics --extra postgres --extra redis)
  fi
  .uv/bin/uv sync --quiet --locked --python "$python" "${sync[@]}" || {
    echo "setup: could not install from uv.lock; if pyproject.toml changed, run .uv/bin/uv lock" \
      "(or scripts/upgrade.sh) and commit uv.lock" >&2
    exit 1
  }
  printf '%s' "$key" >"$stamp"
fi
