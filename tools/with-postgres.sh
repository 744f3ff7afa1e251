#!/usr/bin/env bash
# Runs CMD... with a throwaway PostgreSQL 15 server: a fresh cluster in a temporary directory
# (initdb + pg_ctl as the `postgres` user, which the Debian package creates; initdb refuses root),
# listening on 127.0.0.1 and a free port only, its socket in the same directory. Exports
# FABRIKAM_TEST_POSTGRES_URL (postgresql://app@127.0.0.1:PORT/postgres) for the command, and stops
# the server and removes the directory afterwards, also when the command or the start fails.
# The command's exit status is this script's. Trust authentication for the tests' role `app`: a
# test cluster only. A second role, `secret_user`, must give its password (scram-sha-256 over
# TCP): FABRIKAM_TEST_POSTGRES_SECRET_URL names it and FABRIKAM_TEST_POSTGRES_SECRET_PASSWORD_FILE
# holds its random password, as a mounted Secret would (the tests of passwords read from files).
#   usage: tools/with-postgres.sh swift test --skip-build
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 CMD..." >&2; exit 2; }

bin=/usr/lib/postgresql/15/bin
[ -x "$bin/initdb" ] || { echo "$0: PostgreSQL 15 is not installed (make deps: postgresql-15)" >&2; exit 1; }

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

dir=$(mktemp -d /tmp/fabrikam-pg.XXXXXX)
chmod 755 "$dir"
chown postgres "$dir"
started=""
stop() {
  local status=$?
  if [ -n "$started" ]; then
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 \
      || as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free port: bind port 0 on loopback and ask what the kernel chose. Another process could take
# it before the server binds; pg_ctl then fails and we try the next one.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_postgres "$bin/initdb" -D "$dir/data" -A trust -U app --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# First match wins in pg_hba.conf: secret_user's line goes before initdb's trust lines.
(umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$dir/secret-password")
sed -i '1i host all secret_user 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  # max_connections: tests run in parallel, each database handle is a small pool.
  if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
       -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null 2>&1; then
    started=1
    break
  fi
  tail -5 "$dir/server.log" >&2 || true
done
[ -n "$started" ] || { echo "$0: PostgreSQL did not start" >&2; exit 1; }

export FABRIKAM_TEST_POSTGRES_URL="postgresql://app@127.0.0.1:$port/postgres"
# The password goes in through psql's standard input, so it is in no command line.
printf "CREATE ROLE secret_user LOGIN PASSWORD '%s'; GRANT CREATE ON DATABASE postgres TO secret_user;\n" "$(<"$dir/secret-password")" \
  | psql -q -v ON_ERROR_STOP=1 "$FABRIKAM_TEST_POSTGRES_URL" >/dev/null
export FABRIKAM_TEST_POSTGRES_SECRET_URL="postgresql://secret_user@127.0.0.1:$port/postgres"
export FABRIKAM_TEST_POSTGRES_SECRET_PASSWORD_FILE="$dir/secret-password"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port ($dir)" >&2
status=0
"$@" || status=$?
exit "$status"
