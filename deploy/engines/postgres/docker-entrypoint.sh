#!/bin/bash
# The entry point of deploy/engines/postgres: a cluster on the volume at first start, from
# POSTGRES_USER / POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) / POSTGRES_DB as the official
# image reads them, then the server in the foreground (PID 1's child under an init, so SIGINT,
# the image's stop signal, is a fast shutdown). Runs as the postgres user (uid 10003) throughout:
# the volume must be writable by it (compose's named volume takes the image folder's owner;
# Kubernetes sets fsGroup 10003).
set -euo pipefail
if [[ ${1:-postgres} != postgres ]]; then exec "$@"; fi
shift || true
: "${PGDATA:=/var/lib/postgresql/data}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
if [[ -n ${POSTGRES_PASSWORD_FILE:-} ]]; then POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE"); fi
if [[ ! -s $PGDATA/PG_VERSION ]]; then
    # No trust for network clients: without a password the server would take anyone on the
    # network, so refuse to start (the official image does the same).
    [[ -n ${POSTGRES_PASSWORD:-} ]] || { echo "postgres: set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)" >&2; exit 1; }
    mkdir -p "$PGDATA"; chmod 0700 "$PGDATA"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    # Clients come from other containers: password (SCRAM) from any address; the socket stays trust.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [[ $database != postgres ]]; then
        echo "CREATE DATABASE \"$database\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "postgres: cluster created in $PGDATA (user $user, database $database)"
fi
unset POSTGRES_PASSWORD
# The socket in /tmp: a read-only root filesystem gets a tmpfs there in compose, podman (which
# also mounts a root-owned /run over the image's /var/run/postgresql) and Kubernetes (emptyDir).
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
