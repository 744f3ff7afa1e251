#!/usr/bin/env bash
# tools/scaled/netns-up.sh: the hosts of the scaled deployment as network namespaces on one bridge
# (docs/design/scale-out.md §5.2). Idempotent: what exists already is left as it is.
#
#   <P>-sw    the bridge br0 only, so nothing of this lives in the root namespace
#   <P>-data  198.18.0.10  PostgreSQL and NATS            (names: postgres nats data)
#   <P>-a     198.18.0.11  one replica of every service    (names: every service, host-a)
#   <P>-b     198.18.0.12  the second replica of each      (names: every service, host-b)
#   <P>-load  198.18.0.20  the client side: tests, load, curl
#
# No namespace has a default route and no veth end stays in the root namespace: nothing leaves
# the bridge. /etc/netns/<ns>/hosts (bind-mounted over /etc/hosts by `ip netns exec`) lists each
# service name once per replica, so a client resolving `delivery` gets every replica's address.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

exists "$P-sw" || ip netns add "$P-sw"
ip -n "$P-sw" link show br0 >/dev/null 2>&1 || ip -n "$P-sw" link add br0 type bridge
ip -n "$P-sw" link set br0 up

hosts_file() {
    echo "127.0.0.1 localhost"
    echo "$DATA_IP postgres nats data"
    for h in "${service_hosts[@]}"; do
        echo "$(host_ip "$h") accounts package dronescheduler delivery deliveryhistory ingestion workflow supervisor simulator gateway host-$h"
    done
    echo "$LOAD_IP load"
}

for h in data "${service_hosts[@]}" load; do
    ns=$P-$h
    exists "$ns" || ip netns add "$ns"
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        # Names of at most 15 characters; the pair is created in the host's namespace directly,
        # its peer in the switch's, so neither end ever appears in the root namespace.
        ip -n "$ns" link del tmp0 2>/dev/null || true
        ip -n "$P-sw" link del "$h-1" 2>/dev/null || true
        ip -n "$ns" link add tmp0 type veth peer name "$h-1" netns "$P-sw"
        ip -n "$ns" link set tmp0 name eth0
        ip -n "$ns" addr add "$(host_ip "$h")/24" dev eth0
    fi
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$P-sw" link set "$h-1" master br0 up
    mkdir -p "/etc/netns/$ns"
    hosts_file > "/etc/netns/$ns/hosts"
done
echo "netns-up: $P-sw (bridge), $P-data $DATA_IP, $(for h in "${service_hosts[@]}"; do printf '%s-%s %s, ' "$P" "$h" "$(host_ip "$h")"; done)$P-load $LOAD_IP"
