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

# CPU priority. The background tier runs under Linux's SCHED_IDLE policy (FABRIKAM_BACKGROUND=idle,
# the default; `normal` turns it off): the request queue's consumers (Workflow), the Supervisor's
# sweeps, History's event consumer, and the drone simulator (which stands in for the drones' own
# computers). Nothing a client waits on runs there: a client waits on the gateway and Ingestion,
# which answer once the request is durably queued, and on the services they and Workflow call.
# The queue is there so that intake never waits for the backlog; at the same priority on a shared
# machine the backlog's sagas took most of the cores from the intake (docs/benchmarks.md, "Scaled
# out"). With cores to spare it changes nothing. A policy, not a nice value: every thread inherits
# the policy, while Dispatch sets each worker thread's nice value from its QoS, so `nice` reached
# only the main thread. Within the kernel's autogroups (a session each) it weighs the system's own
# processes against one another, not against other sessions' work.
background=()
case ${FABRIKAM_BACKGROUND:-idle} in
    idle)   background=(chrt --idle 0) ;;
    normal) ;;
    *) echo "FABRIKAM_BACKGROUND must be idle or normal, not '$FABRIKAM_BACKGROUND'" >&2; exit 2 ;;
esac

case $name in
    accounts)        exec "$bin/accounts-service" "$@" ;;
    package)         exec "$bin/package-service" "$@" ;;
    dronescheduler)  exec "$bin/dronescheduler-service" "$@" ;;
    delivery)        exec "$bin/delivery-service" "$@" ;;
    deliveryhistory) exec "${background[@]}" "$bin/deliveryhistory-service" "$@" ;;
    ingestion)       exec "$bin/ingestion-service" "$@" ;;
    workflow)        exec "${background[@]}" "$bin/workflow-service" "$@" ;;
    supervisor)      exec "${background[@]}" "$bin/supervisor-service" "$@" ;;
    simulator)       exec "${background[@]}" "$bin/drone-simulator" "$@" ;;
    gateway)         exec "$bin/gateway" --config "${FABRIKAM_GATEWAY_CONFIG:-$root/config/gateway.json}" \
                          ${FABRIKAM_GATEWAY_PORT:+--port "$FABRIKAM_GATEWAY_PORT"} "$@" ;;
    *) echo "unknown service: $name (one of: accounts package dronescheduler delivery deliveryhistory ingestion workflow supervisor simulator gateway)" >&2
       exit 2 ;;
esac
