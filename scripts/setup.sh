#!/usr/bin/env bash
# Install what botcore needs on a Debian/Ubuntu machine: ffmpeg, a virtualenv in .venv, the
# package itself (and, with "test", the test tools and the example plugins). Safe to run again.
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
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "setup: installing ${apt_packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

python3 - <<'PY' || { echo "setup: botcore needs Python 3.11 or newer" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.botcore-$want"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ examples/botcore-dice/pyproject.toml -nt "$stamp" ] \
  || [ examples/botcore-calc/pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "$want" = test ]; then
    .venv/bin/python -m pip install -q -e ".[test]" -e examples/botcore-dice -e examples/botcore-calc
  else
    .venv/bin/python -m pip install -q -e .
  fi
  touch "$stamp"
fi
