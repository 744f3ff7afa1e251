#!/usr/bin/env bash
# `make run`: the whole system on one machine, every service in its own process.
#
#   tools/run.sh [--no-build]
#
# Data (SQLite files, one per service, and the broker) lives in FABRIKAM_DATA_DIR (default
# ./data) and survives restarts. Ports start at FABRIKAM_PORT_BASE (default 15051; the gateway
# 8080, or base + 9 when it is set), see README. A port in use stops the start with its number
# and the variable that moves it.
# Each service's log is in $FABRIKAM_DATA_DIR/logs/. Ctrl-C stops every process this started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ ${1:-} != --no-build ]]; then
    bash tools/install-deps.sh
    swift build
fi
export FABRIKAM_DATA_DIR=${FABRIKAM_DATA_DIR:-$root/data}
mkdir -p "$FABRIKAM_DATA_DIR/logs" "$FABRIKAM_DATA_DIR/pids"

# Start order: leaves first, so callers find their downstreams (they retry anyway).
order=(accounts package dronescheduler deliveryhistory simulator delivery supervisor workflow ingestion gateway)
# The local demo business and its API key (printed below); set FABRIKAM_SEED_API_KEY= to have none.
export FABRIKAM_SEED_API_KEY=${FABRIKAM_SEED_API_KEY-fdk_local_demo_key}
pids=()
stopping=0
stop() {
    trap - INT TERM EXIT
    stopping=1
    echo
    echo "stopping ${#pids[@]} processes..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped. Data kept in $FABRIKAM_DATA_DIR"
}
trap stop INT TERM EXIT

for name in "${order[@]}"; do
    log="$FABRIKAM_DATA_DIR/logs/$name.log"
    : > "$log"
    bash tools/run-service.sh "$name" >>"$log" 2>&1 &
    pids+=($!)
    echo "$!" > "$FABRIKAM_DATA_DIR/pids/$name.pid"
    # Wait for its "listening" line (or its death).
    for _ in $(seq 1 200); do
        if grep -q "listening on" "$log"; then break; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "$name failed to start; its log ($log):"
            tail -20 "$log"
            exit 1
        fi
        sleep 0.05
    done
    # The address from the "listening on" line (a metrics line with its own port may come first).
    printf '  %-16s %s\n' "$name" "$(grep -m1 -o 'listening on [^ ]*' "$log" | cut -d' ' -f3)"
done
echo "system up: ${#pids[@]} processes (data: $FABRIKAM_DATA_DIR, logs: $FABRIKAM_DATA_DIR/logs). Ctrl-C stops them."
if [[ -n $FABRIKAM_SEED_API_KEY ]]; then echo "demo account: acct-demo, API key: $FABRIKAM_SEED_API_KEY (local only)"; fi
# Stay in the foreground. A service that dies is reported and the others keep running (a test
# may kill one on purpose and start it again with tools/run-service.sh).
declare -A names
for i in "${!pids[@]}"; do names[${pids[$i]}]=${order[$i]}; done
live=("${pids[@]}")
set +e
while ((${#live[@]} > 0)); do
    wait -n -p dead "${live[@]}"
    status=$?
    [[ $stopping == 1 || -z ${dead:-} ]] && break
    echo "${names[$dead]} exited (status $status); see $FABRIKAM_DATA_DIR/logs/${names[$dead]}.log"
    live=($(printf '%s\n' "${live[@]}" | grep -vx "$dead"))
done
