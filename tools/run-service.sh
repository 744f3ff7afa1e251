#!/usr/bin/env bash
# Starts one service of the system in the foreground, wired to the others:
#   tools/run-service.sh NAME      (NAME: accounts package dronescheduler delivery deliveryhistory
#                                   ingestion workflow supervisor simulator)
# Ports: FABRIKAM_PORT_BASE (default 50051) + the service's offset, on 127.0.0.1.
# Data:  FABRIKAM_DATA_DIR (default ./data). Binaries: FABRIKAM_BIN_DIR (default .build/debug).
# Any other FABRIKAM_<FLAG> variable sets that flag (for example FABRIKAM_TIME_SCALE=20).
# The gateway listens on 8080 (FABRIKAM_GATEWAY_PORT) unless FABRIKAM_PORT_BASE is set (then base + 9).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: run-service.sh NAME}
shift
base=${FABRIKAM_PORT_BASE:-50051}
bin=${FABRIKAM_BIN_DIR:-$root/.build/debug}
export FABRIKAM_DATA_DIR=${FABRIKAM_DATA_DIR:-$root/data}

services=(accounts package dronescheduler delivery deliveryhistory ingestion workflow supervisor simulator gateway)
port_of() {
    local i
    for i in "${!services[@]}"; do
        if [[ ${services[$i]} == "$1" ]]; then echo $((base + i)); return; fi
    done
    echo "unknown service: $1 (one of: ${services[*]})" >&2
    exit 2
}
address() { echo "127.0.0.1:$(port_of "$1")"; }

port=$(port_of "$name")
# The gateway is the public door: 8080 unless the ports were moved (tests), then base + 9.
if [[ $name == gateway && -z ${FABRIKAM_PORT_BASE:-} ]]; then port=${FABRIKAM_GATEWAY_PORT:-8080}; fi
case $name in
    accounts)        exec "$bin/accounts-service" --port "$port" "$@" ;;
    package)         exec "$bin/package-service" --port "$port" "$@" ;;
    dronescheduler)  exec "$bin/dronescheduler-service" --port "$port" "$@" ;;
    delivery)        exec "$bin/delivery-service" --port "$port" --simulator "$(address simulator)" "$@" ;;
    deliveryhistory) exec "$bin/deliveryhistory-service" --port "$port" "$@" ;;
    ingestion)       exec "$bin/ingestion-service" --port "$port" "$@" ;;
    workflow)        exec "$bin/workflow-service" --port "$port" --accounts "$(address accounts)" --package "$(address package)" \
                          --dronescheduler "$(address dronescheduler)" --delivery "$(address delivery)" \
                          --supervisor "$(address supervisor)" "$@" ;;
    supervisor)      exec "$bin/supervisor-service" --port "$port" --package "$(address package)" \
                          --dronescheduler "$(address dronescheduler)" --delivery "$(address delivery)" \
                          --simulator "$(address simulator)" "$@" ;;
    gateway)         exec "$bin/gateway" --port "$port" --config "${FABRIKAM_GATEWAY_CONFIG:-$root/config/gateway.json}" \
                          --accounts "$(address accounts)" --package "$(address package)" --dronescheduler "$(address dronescheduler)" \
                          --delivery "$(address delivery)" --deliveryhistory "$(address deliveryhistory)" --ingestion "$(address ingestion)" "$@" ;;
    simulator)       exec "$bin/drone-simulator" --port "$port" --delivery "$(address delivery)" \
                          --dronescheduler "$(address dronescheduler)" "$@" ;;
esac
