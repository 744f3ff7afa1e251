#!/usr/bin/env bash
# `make run-scaled`: the system on PostgreSQL and NATS JetStream with two replicas of every
# service and of the gateway, each host a network namespace of its own (docs/design/scale-out.md §5).
#
#   tools/run-scaled.sh [--no-build] [--replicas N]   start, stay in the foreground; Ctrl-C stops
#                                                     everything and removes the namespaces
#   tools/run-scaled.sh --up [--replicas N]           start and return (the system keeps running)
#   tools/run-scaled.sh --down                        stop it and remove everything it made
#                                                     (idempotent: fine when nothing is up)
#
# Needs root (ip netns). Hosts: <P>-data 198.18.0.10 (PostgreSQL :5432, NATS :4222), <P>-a
# 198.18.0.11 and <P>-b 198.18.0.12 (one replica of each service on its default port, gateway
# :8080, metrics on port + 100), <P>-load 198.18.0.20 (for clients), all on a bridge that lives
# in namespace <P>-sw: nothing is bound in the root namespace. Reach the gateways from the load
# host: `ip netns exec fab-load curl http://gateway:8080/...` (the name resolves to both).
# State, logs and pids: $FABRIKAM_SCALED_DIR (default /tmp/fabrikam-scaled-fab), removed by --down.
# Debug binaries (FABRIKAM_BIN_DIR to use others); FABRIKAM_<FLAG> variables reach every replica.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=foreground build=1
while (($#)); do
    case $1 in
        --up) mode=up ;;
        --down) mode=down ;;
        --no-build) build="" ;;
        --replicas) export FABRIKAM_REPLICAS=${2:?--replicas N}; shift ;;
        *) echo "usage: run-scaled.sh [--up|--down] [--no-build] [--replicas N]" >&2; exit 2 ;;
    esac
    shift
done
source "$here/scaled/common.sh"
need_root
if [[ $mode == down ]]; then exec bash "$here/scaled/netns-down.sh"; fi

if ip netns list | awk '{print $1}' | grep -qx "$P-sw"; then
    echo "run-scaled: $P is already up (tools/run-scaled.sh --down stops it)" >&2; exit 1
fi
if [[ -n $build ]]; then (cd "$root" && bash tools/install-deps.sh && swift build); fi
failed() { echo "run-scaled: start failed; removing what was made" >&2; bash "$here/scaled/netns-down.sh" --keep-state >&2
           echo "run-scaled: logs kept in $STATE/logs" >&2; }
trap 'failed; exit 1' ERR
trap 'failed; exit 130' INT TERM
start=$(date +%s.%N)
rm -rf "$STATE"; mkdir -p "$STATE/pids" "$STATE/logs"
bash "$here/scaled/netns-up.sh"
bash "$here/scaled/engines.sh" start
# Each service on every host at once, the hosts' replicas in parallel; the next service after
# all replicas of this one listen (leaves first, as tools/run.sh).
for name in "${services[@]}"; do
    jobs_=()
    for h in "${service_hosts[@]}"; do bash "$here/scaled/start-service.sh" "$h" "$name" & jobs_+=($!); done
    for j in "${jobs_[@]}"; do wait "$j"; done
done
trap - ERR INT TERM
printf 'system up in %.1f s: %d replicas of each service and of the gateway (hosts %s), PostgreSQL and NATS on %s-data\n' \
    "$(echo "$(date +%s.%N) - $start" | bc)" "$REPLICAS" "${service_hosts[*]}" "$P"
echo "  gateways: $(for h in "${service_hosts[@]}"; do printf 'http://%s:8080 ' "$(host_ip "$h")"; done)(name: gateway, from $P-load)"
echo "  try: ip netns exec $P-load curl -s http://gateway:8080/v1/deliveries/dlv-x/status -H 'Authorization: Bearer ${FABRIKAM_SEED_API_KEY-fdk_local_demo_key}'"
echo "  logs: $STATE/logs; stop: $([[ $mode == up ]] && echo "tools/run-scaled.sh --down" || echo "Ctrl-C")"
[[ $mode == up ]] && exit 0

# Foreground: report a replica that dies (a test may kill one on purpose and start it again with
# tools/scaled/start-service.sh), stop everything on Ctrl-C.
trap 'echo; bash "$here/scaled/netns-down.sh"; exit 0' INT TERM
declare -A reported
while true; do
    for f in "$STATE"/pids/*.pid; do
        pid=$(<"$f"); n=$(basename "$f" .pid)
        if ! kill -0 "$pid" 2>/dev/null && [[ ${reported[$n]:-} != "$pid" ]]; then
            echo "$n (pid $pid) exited; see $STATE/logs/$n.log"; reported[$n]=$pid
        fi
    done
    sleep 2 & wait $! || true
done
