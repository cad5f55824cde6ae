#!/usr/bin/env bash
# Private PostgreSQL and Redis servers for the tests: installed from Debian's packages if missing,
# started on free loopback ports in a temporary folder, stopped (and the folder removed) after.
#   eval "$(scripts/services.sh start)"   # prints export lines: BOTCORE_TEST_POSTGRES_URL,
#                                         # BOTCORE_TEST_REDIS_URL, BOTCORE_SERVICES_DIR
#   scripts/services.sh stop              # uses BOTCORE_SERVICES_DIR
# Under pytest-xdist each worker uses a database of its own on this PostgreSQL server and starts a
# Redis server of its own in BOTCORE_SERVICES_DIR/redis-<worker> (botcore/testing/stores.py); stop
# ends those a killed worker left running.
# No system service is used or changed. PostgreSQL refuses to run as root, so as root it runs as
# the "postgres" user (created if missing). Progress goes to stderr, exports to stdout.
set -euo pipefail

say() { echo "services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  say "need root (or sudo) to install: $*"; return 1; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_bin() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }

install_missing() {
  local packages=()
  [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || packages+=(postgresql)
  command -v redis-server >/dev/null || packages+=(redis-server)
  [ "${#packages[@]}" -eq 0 ] && return 0
  say "installing ${packages[*]}"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
}

start() {
  install_missing
  local dir bin pg_port redis_port password user=()
  dir="$(mktemp -d /tmp/botcore-services.XXXXXX)"
  chmod 755 "$dir"
  trap "BOTCORE_SERVICES_DIR='$dir' stop" EXIT  # a failed start leaves nothing running
  cd "$dir"  # the postgres user may not be allowed into the caller's folder
  password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')"
  bin="$(pg_bin)"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --user-group --no-create-home postgres
    user=(runuser -u postgres --)
  fi
  mkdir "$dir/pg"
  printf '%s\n' "$password" >"$dir/pg.password"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/pg" "$dir/pg.password"
  "${user[@]}" "$bin/initdb" -D "$dir/pg/data" -U botcore --pwfile="$dir/pg.password" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  pg_port="$(free_port)"
  "${user[@]}" "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/pg -c fsync=off" >&2 \
    || { cat "$dir/pg/server.log" >&2; exit 1; }
  redis_port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no \
    --requirepass "$password" >&2
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" -a "$password" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" -a "$password" --no-auth-warning ping 2>/dev/null | grep -q PONG \
    || { cat "$dir/redis.log" >&2; exit 1; }
  trap - EXIT
  say "postgres on 127.0.0.1:$pg_port, redis on 127.0.0.1:$redis_port ($dir)"
  echo "export BOTCORE_SERVICES_DIR=$dir"
  echo "export BOTCORE_TEST_POSTGRES_URL=postgresql://botcore:$password@127.0.0.1:$pg_port/postgres"
  echo "export BOTCORE_TEST_REDIS_URL=redis://:$password@127.0.0.1:$redis_port/0"
}

stop() {
  local dir="${BOTCORE_SERVICES_DIR:-}" user=()
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  [ "$(id -u)" = 0 ] && user=(runuser -u postgres --)
  cd /
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    "${user[@]}" "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  for pidfile in "$dir"/redis.pid "$dir"/redis-*/redis.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
