#!/usr/bin/env bash
# Starts one process of the system in the foreground, wired to the others:
#   tools/run-service.sh NAME      (NAME: accounts package dronescheduler delivery deliveryhistory
#                                   ingestion workflow supervisor simulator gateway)
# Ports: every process takes its own and its downstreams' from FABRIKAM_PORT_BASE (default 15051,
# the gateway 8080, or FABRIKAM_GATEWAY_PORT) in one fixed order, written once in
# Sources/ServiceKit/ServicePorts.swift.
# Data:  FABRIKAM_DATA_DIR (default ./data). Binaries: FABRIKAM_BIN_DIR (default .build/debug).
# Any other FABRIKAM_<FLAG> variable sets that flag (for example FABRIKAM_TIME_SCALE=20).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: run-service.sh NAME}
shift
bin=${FABRIKAM_BIN_DIR:-$root/.build/debug}
export FABRIKAM_DATA_DIR=${FABRIKAM_DATA_DIR:-$root/data}

# CPU priority: the background tier, Workflow (the request queue's consumer) and the Supervisor
# (sweeps), runs at nice FABRIKAM_BACKGROUND_NICE (default 19; 0 turns it off). Nothing a client
# waits on runs there, and no other service calls them on a client's path. On a shared machine it
# keeps the backlog's sagas from taking the cores the intake needs: two scaled replicas took as
# much intake as the embedded default or more, against half without it (docs/services.md, "CPU
# priority"). A starved Workflow's calls time out and open its circuit breakers; a saga waits out
# an open breaker rather than failing (SagaRunner), which the priority needed.
# Dispatch sets each worker thread's nice value from its QoS (0, -4), which undid `nice` for all
# but the main thread when run as root; without CAP_SYS_NICE a process cannot lower its nice
# value, so as root the capability is dropped first (setpriv).
background_nice=${FABRIKAM_BACKGROUND_NICE:-19}
[[ $background_nice =~ ^[0-9]+$ ]] && ((background_nice <= 19)) || { echo "FABRIKAM_BACKGROUND_NICE must be 0 to 19, not '$background_nice'" >&2; exit 2; }
background=()
if ((background_nice > 0)); then
    if [[ $(id -u) == 0 ]]; then background=(setpriv --bounding-set -sys_nice nice -n "$background_nice")
    else background=(nice -n "$background_nice"); fi
fi

case $name in
    accounts)        exec "$bin/accounts-service" "$@" ;;
    package)         exec "$bin/package-service" "$@" ;;
    dronescheduler)  exec "$bin/dronescheduler-service" "$@" ;;
    delivery)        exec "$bin/delivery-service" "$@" ;;
    deliveryhistory) exec "$bin/deliveryhistory-service" "$@" ;;
    ingestion)       exec "$bin/ingestion-service" "$@" ;;
    workflow)        exec "${background[@]}" "$bin/workflow-service" "$@" ;;
    supervisor)      exec "${background[@]}" "$bin/supervisor-service" "$@" ;;
    simulator)       exec "$bin/drone-simulator" "$@" ;;
    gateway)         exec "$bin/gateway" --config "${FABRIKAM_GATEWAY_CONFIG:-$root/config/gateway.json}" \
                          ${FABRIKAM_GATEWAY_PORT:+--port "$FABRIKAM_GATEWAY_PORT"} "$@" ;;
    *) echo "unknown service: $name (one of: accounts package dronescheduler delivery deliveryhistory ingestion workflow supervisor simulator gateway)" >&2
       exit 2 ;;
esac
