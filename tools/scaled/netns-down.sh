#!/usr/bin/env bash
# tools/scaled/netns-down.sh: undoes tools/run-scaled.sh, whatever state it was left in (safe to
# run twice, or when nothing is up). Stops the services it recorded (SIGTERM, then SIGKILL after
# 10 s), the engines, any process still inside one of the namespaces (they can only be ours), then
# deletes the namespaces (their veths go with them), /etc/netns/<P>-*, and the state folder
# unless --keep-state.
set -uo pipefail
source "$(dirname "$0")/common.sh"
need_root
keep=""; [[ ${1:-} == --keep-state ]] && keep=1

ours() { # pids recorded by start-service.sh and engines.sh, alive
    local f pid
    for f in "$STATE"/pids/*.pid; do
        [[ -e $f ]] || continue
        pid=$(<"$f"); [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    done
}
pids=$(ours)
if [[ -n $pids ]]; then
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 1 100); do [[ -z $(ours) ]] && break; sleep 0.1; done
    pids=$(ours); [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
fi
[[ -d $STATE ]] && bash "$(dirname "$0")/engines.sh" stop >/dev/null 2>&1
# Anything left inside our namespaces (a process a test started there, a restarted replica).
for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(sw|data|load|a|b|c|d)\$"); do
    left=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $left ]] && kill -KILL $left 2>/dev/null
done
sleep 0.2
for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(sw|data|load|a|b|c|d)\$"); do
    ip netns del "$ns" || echo "netns-down: could not delete $ns" >&2
done
rm -rf /etc/netns/"$P"-{sw,data,load,a,b,c,d}
rmdir /etc/netns 2>/dev/null    # only if nothing else (another prefix, another tool) uses it
[[ -z $keep ]] && rm -rf "$STATE"
echo "netns-down: $P namespaces, processes and /etc/netns/$P-* removed${keep:+ (state kept in $STATE)}"
exit 0
