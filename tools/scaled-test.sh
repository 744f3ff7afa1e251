#!/usr/bin/env bash
# tools/scaled-test.sh [--chaos]: `make scaled-test` (and `make chaos-test` with --chaos).
#
# Starts the scaled system (tools/run-scaled.sh --up: network namespaces, PostgreSQL, NATS, two
# replicas of every service and of the gateway) under its own namespace prefix (fabt, so it runs
# beside a `make run-scaled`), runs the end-to-end delivery test from the load host
# (tools/scaled/e2e.py; with --chaos, the chaos test tools/scaled/chaos.py after it), and removes
# everything it made, also on failure or interruption (logs are then copied to
# .build/scaled-test/logs). Bounded: the start waits at most 60 s per service, the e2e test at most
# 300 s, the chaos test at most 900 s. Debug binaries from .build/debug (`swift build` first).
# Needs root. Prints its wall time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
chaos=""; [[ ${1:-} == --chaos ]] && chaos=1
export FABRIKAM_NETNS_PREFIX=${FABRIKAM_NETNS_PREFIX:-fabt}
export FABRIKAM_SCALED_DIR=${FABRIKAM_SCALED_DIR:-/tmp/fabrikam-scaled-$FABRIKAM_NETNS_PREFIX}
export FABRIKAM_REPLICAS=${FABRIKAM_REPLICAS:-2}
# Fast flights, as the Swift end-to-end suite runs them (RunningSystem's defaults).
export FABRIKAM_TIME_SCALE=${FABRIKAM_TIME_SCALE:-60} FABRIKAM_TICK_MS=${FABRIKAM_TICK_MS:-200}
P=$FABRIKAM_NETNS_PREFIX
start=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)"; }
status=1
finish() {
    trap - EXIT INT TERM
    if [[ $status != 0 && -d $FABRIKAM_SCALED_DIR/logs ]]; then
        rm -rf "$root/.build/scaled-test/logs"; mkdir -p "$root/.build/scaled-test"
        cp -r "$FABRIKAM_SCALED_DIR/logs" "$root/.build/scaled-test/logs"
        cp "$FABRIKAM_SCALED_DIR/postgres/server.log" "$root/.build/scaled-test/logs/postgres.log" 2>/dev/null || true
        echo "scaled-test: logs in .build/scaled-test/logs"
    fi
    bash "$root/tools/run-scaled.sh" --down >/dev/null 2>&1 || true
    if ip netns list | grep -q "^$P-"; then echo "scaled-test: namespaces left behind"; status=1; fi
    echo "scaled-test: $([[ $status == 0 ]] && echo PASSED || echo FAILED) in $(elapsed) s wall"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

# Whatever an interrupted earlier run left.
bash "$root/tools/run-scaled.sh" --down >/dev/null
bash "$root/tools/run-scaled.sh" --up --no-build
up=$(elapsed)
# CPU priority (run-service.sh): every thread of the background tier's replicas at nice
# FABRIKAM_BACKGROUND_NICE (default 19; a thread that Dispatch set back to its QoS's value would
# show 0 or -4), and no thread of the other replicas above 0.
want_background=${FABRIKAM_BACKGROUND_NICE:-19}
for pidfile in "$FABRIKAM_SCALED_DIR"/pids/*.pid; do
    replica=$(basename "$pidfile" .pid); pid=$(cat "$pidfile")
    background=""; case ${replica#*-} in workflow|supervisor) ((want_background > 0)) && background=1 ;; esac
    for stat in /proc/"$pid"/task/*/stat; do
        nice=$(sed 's/^.*) //' "$stat" | cut -d' ' -f17)
        if [[ -n $background ]]; then
            [[ $nice == "$want_background" ]] || { echo "scaled-test: $replica (pid $pid) has a thread at nice $nice, not $want_background"; exit 1; }
        else
            ((nice <= 0)) || { echo "scaled-test: $replica (pid $pid) has a thread at nice $nice: only the background tier is lowered"; exit 1; }
        fi
    done
done
echo "scaled-test: CPU priority: the background tier's threads at nice $want_background, none of the others lowered"
timeout 300 ip netns exec "$P-load" python3 "$root/tools/scaled/e2e.py"
e2e_done=$(elapsed)
echo "scaled-test: system up after ${up} s, e2e passed after ${e2e_done} s"
if [[ -n $chaos ]]; then
    timeout 900 ip netns exec "$P-load" python3 "$root/tools/scaled/chaos.py"
fi
status=0
