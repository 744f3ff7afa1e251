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

case $name in
    accounts)        exec "$bin/accounts-service" "$@" ;;
    package)         exec "$bin/package-service" "$@" ;;
    dronescheduler)  exec "$bin/dronescheduler-service" "$@" ;;
    delivery)        exec "$bin/delivery-service" "$@" ;;
    deliveryhistory) exec "$bin/deliveryhistory-service" "$@" ;;
    ingestion)       exec "$bin/ingestion-service" "$@" ;;
    workflow)        exec "$bin/workflow-service" "$@" ;;
    supervisor)      exec "$bin/supervisor-service" "$@" ;;
    simulator)       exec "$bin/drone-simulator" "$@" ;;
    gateway)         exec "$bin/gateway" --config "${FABRIKAM_GATEWAY_CONFIG:-$root/config/gateway.json}" \
                          ${FABRIKAM_GATEWAY_PORT:+--port "$FABRIKAM_GATEWAY_PORT"} "$@" ;;
    *) echo "unknown service: $name (one of: accounts package dronescheduler delivery deliveryhistory ingestion workflow supervisor simulator gateway)" >&2
       exit 2 ;;
esac
