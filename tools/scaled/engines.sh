#!/usr/bin/env bash
# tools/scaled/engines.sh start|stop|restart-postgres|restart-nats|kill-nats|start-nats
# PostgreSQL 15 and nats-server (JetStream) on the data host <P>-data, 198.18.0.10
# (docs/design/scale-out.md §5.3). Their files live in $STATE/postgres and $STATE/nats, so a
# restart finds its data again. PostgreSQL: a throwaway cluster with trust authentication for
# the bridge's /24 only (as tools/with-postgres.sh does on loopback), database `fabrikam`, one
# schema per service created by the services' migrations.
#   restart-postgres: `pg_ctl -m immediate stop` (a crash: no checkpoint) and start again
#   restart-nats:     SIGKILL and start again on the same store directory
# FABRIKAM_ENGINE_DOWN_SECONDS (default 0): how long an engine stays down in a restart.
# FABRIKAM_PG_OPTIONS: more server options for postgres, e.g. "-c shared_preload_libraries=pg_stat_statements"
# to see which statements cost what (CREATE EXTENSION pg_stat_statements in database fabrikam).
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root
mkdir -p "$STATE/pids" "$STATE/logs"
down=${FABRIKAM_ENGINE_DOWN_SECONDS:-0}
pg=$STATE/postgres

in_data() { ip netns exec "$P-data" "$@"; }
as_pg() { runuser -u postgres -- "$@"; }

pg_start() {
    if [[ ! -d $pg/data ]]; then
        mkdir -p "$pg"; chmod 755 "$STATE" "$pg"; chown postgres "$pg"
        as_pg "$PG_BIN/initdb" -D "$pg/data" -A trust -U app --no-sync -E UTF8 >"$STATE/logs/initdb.log" 2>&1 \
            || { cat "$STATE/logs/initdb.log" >&2; exit 1; }
        # initdb's trust lines cover 127.0.0.1 and ::1 only.
        echo "host all all $NET.0/24 trust" >> "$pg/data/pg_hba.conf"
        local fresh=1
    fi
    in_data runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w -t 60 \
        -o "-p 5432 -k $pg -c listen_addresses=$DATA_IP -c max_connections=300 ${FABRIKAM_PG_OPTIONS:-}" start >/dev/null
    head -1 "$pg/data/postmaster.pid" > "$STATE/pids/engine-postgres.pid"
    if [[ -n ${fresh:-} ]]; then
        in_data psql -q -h "$DATA_IP" -p 5432 -U app -d postgres -c "create database fabrikam" >/dev/null
    fi
}
pg_stop() { # $1: fast or immediate
    [[ -f $pg/data/postmaster.pid ]] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -m "$1" -w -t 30 stop >/dev/null 2>&1 \
        || as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -f "$STATE/pids/engine-postgres.pid"
}

nats_pid() { local f=$STATE/pids/engine-nats.pid; [[ -f $f ]] && kill -0 "$(<"$f")" 2>/dev/null && cat "$f"; }
nats_start() {
    mkdir -p "$STATE/nats"
    # `ip netns exec` execs the server: $! is nats-server's pid.
    ip netns exec "$P-data" nats-server -js -sd "$STATE/nats" -a "$DATA_IP" -p 4222 -m 8222 >>"$STATE/logs/nats.log" 2>&1 &
    echo $! > "$STATE/pids/engine-nats.pid"
    for _ in $(seq 1 100); do
        if in_data bash -c "exec 3<>/dev/tcp/$DATA_IP/4222" 2>/dev/null && \
           in_data curl -sf "http://$DATA_IP:8222/healthz?js-enabled-only=true" >/dev/null; then return 0; fi
        kill -0 "$!" 2>/dev/null || break
        sleep 0.1
    done
    echo "engines: nats-server did not start:" >&2; tail -20 "$STATE/logs/nats.log" >&2; exit 1
}
nats_stop() { # $1: TERM or KILL
    local pid; pid=$(nats_pid) || return 0
    kill -"$1" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/pids/engine-nats.pid"
}

case ${1:?usage: engines.sh start|stop|restart-postgres|restart-nats} in
    start) pg_start; nats_start
           echo "engines: PostgreSQL $DATA_IP:5432 (database fabrikam, $pg), nats-server $DATA_IP:4222 JetStream ($STATE/nats)" ;;
    stop) nats_stop TERM; pg_stop fast ;;
    restart-postgres) pg_stop immediate; sleep "$down"; pg_start; echo "engines: PostgreSQL restarted (immediate stop: a crash; down ${down} s)" ;;
    restart-nats) nats_stop KILL; sleep "$down"; nats_start; echo "engines: nats-server killed and started again on its store (down ${down} s)" ;;
    *) echo "usage: engines.sh start|stop|restart-postgres|restart-nats" >&2; exit 2 ;;
esac
