#!/bin/bash
# Throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trust auth for user "postgres".
# Why: tests need a real server (SQL dialect, locks, crashes), not a mock; everything lives in one
# temp dir so parallel runs never collide and cleanup is a single rm -rf.
# Prints KEY=VALUE lines: PGDIR PGHOST PGPORT PGUSER PGBIN.
# Stop:  [runuser -u postgres --] $PGBIN/pg_ctl -D $PGDIR/data -m fast stop; rm -rf $PGDIR
set -euo pipefail
shopt -s nullglob
bins=(/usr/lib/postgresql/*/bin)
[ ${#bins[@]} -gt 0 ] || { echo "start-postgres: no /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 3; }
PGBIN=$(printf '%s\n' "${bins[@]}" | sort -V | tail -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
D=$(mktemp -d /tmp/pgtest.XXXXXX)
PORT=$(free_port)
AS=()
if [ "$(id -u)" = 0 ]; then   # initdb/postgres refuse to run as root
  chown postgres:postgres "$D"; AS=(runuser -u postgres --)
fi
fail() {
  echo "start-postgres: $*" >&2
  for f in "$D/initdb.log" "$D/postgres.log"; do [ -f "$f" ] && tail -n 20 "$f" >&2; done
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$D/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$D"
  exit 1
}
"${AS[@]}" "$PGBIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
  >"$D/initdb.log" 2>&1 || fail "initdb failed"
# settings go into postgresql.conf (not pg_ctl -o) so a plain "pg_ctl start" restarts it identically.
# fsync=off is safe against a killed server (only an OS crash loses data); synchronous_commit stays
# on so that a committed row survives kill_hard(), as it would in production.
cat >> "$D/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
fsync = off
synchronous_commit = on
full_page_writes = off
max_connections = 200
CONF
"${AS[@]}" "$PGBIN/pg_ctl" -D "$D/data" -l "$D/postgres.log" -w -t 30 start >/dev/null 2>&1 \
  || fail "pg_ctl start failed on port $PORT"
printf 'PGDIR=%s\nPGHOST=127.0.0.1\nPGPORT=%s\nPGUSER=postgres\nPGBIN=%s\n' "$D" "$PORT" "$PGBIN"
