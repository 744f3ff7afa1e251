#!/usr/bin/env bash
# tools/scaled/start-service.sh HOST SERVICE: starts one replica of SERVICE on service host HOST
# (a, b, ...) inside its namespace, in the background, and returns once it listens (at most 60 s;
# a replica that dies or does not listen in time fails this with its log's tail).
# Its pid goes to $STATE/pids/HOST-SERVICE.pid, its output to $STATE/logs/HOST-SERVICE.log
# (appended: a restarted replica adds to the same log).
#
# Every replica binds 0.0.0.0 in its own namespace on the default ports (each namespace has its
# own port space), keeps its data in PostgreSQL on `postgres` and its messages in JetStream on
# `nats`, and reaches other services by name: `delivery:15054` resolves to every replica's
# address (/etc/netns/<ns>/hosts), over which the RPC clients balance. Its replica id (the holder
# of its claims and leases) is host-HOST-<pid>, new for each start, as a pod's would be.
# Any FABRIKAM_<FLAG> in the environment is passed on (FABRIKAM_TIME_SCALE=60, FABRIKAM_DRONES=...).
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root
h=${1:?usage: start-service.sh HOST SERVICE}; name=${2:?usage: start-service.sh HOST SERVICE}
host_ip "$h" >/dev/null || { echo "start-service: unknown host $h" >&2; exit 2; }
mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/$h"
log=$STATE/logs/$h-$name.log
echo "--- start $(date -u +%FT%T.%3NZ)" >> "$log"
before=$(grep -c "listening on" "$log" || true)

unset FABRIKAM_PORT_BASE FABRIKAM_GATEWAY_PORT FABRIKAM_METRICS_PORT
export FABRIKAM_LISTEN_HOST=0.0.0.0
export FABRIKAM_STORE=$STORE_URL FABRIKAM_BROKER=$BROKER_URL
export FABRIKAM_DATA_DIR=$STATE/$h
export FABRIKAM_BIN_DIR=${FABRIKAM_BIN_DIR:-$root/.build/debug}
# An engine restarting (or not up yet) is waited for at start rather than failing the replica.
export FABRIKAM_ENGINE_WAIT_SECONDS=${FABRIKAM_ENGINE_WAIT_SECONDS:-60}
export FABRIKAM_SEED_API_KEY=${FABRIKAM_SEED_API_KEY-fdk_local_demo_key}
export FABRIKAM_ACCOUNTS=accounts:15051 FABRIKAM_PACKAGE=package:15052 FABRIKAM_DRONESCHEDULER=dronescheduler:15053 \
       FABRIKAM_DELIVERY=delivery:15054 FABRIKAM_DELIVERYHISTORY=deliveryhistory:15055 FABRIKAM_INGESTION=ingestion:15056 \
       FABRIKAM_WORKFLOW=workflow:15057 FABRIKAM_SUPERVISOR=supervisor:15058 FABRIKAM_SIMULATOR=simulator:15059
# `ip netns exec` and then bash exec the service: $! is the service's own pid, which the inner
# shell also knows as $$ and puts in the replica id.
ip netns exec "$P-$h" bash -c 'export FABRIKAM_REPLICA_ID=host-$0-$$; exec bash "$1" "$2"' \
    "$h" "$root/tools/run-service.sh" "$name" >>"$log" 2>&1 &
pid=$!
echo "$pid" > "$STATE/pids/$h-$name.pid"
for _ in $(seq 1 600); do
    (( $(grep -c "listening on" "$log" || true) > before )) && break
    if ! kill -0 "$pid" 2>/dev/null; then echo "start-service: $name on $h exited; its log ($log):" >&2; tail -20 "$log" >&2; exit 1; fi
    sleep 0.1
done
(( $(grep -c "listening on" "$log" || true) > before )) || { echo "start-service: $name on $h did not listen within 60 s ($log)" >&2; tail -20 "$log" >&2; exit 1; }
printf '  %-2s %-16s pid %-7s %s\n' "$h" "$name" "$pid" "$(grep "listening on" "$log" | tail -1 | grep -o 'listening on [^ ]*' | cut -d' ' -f3)"
