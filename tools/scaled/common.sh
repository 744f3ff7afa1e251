# Shared by tools/run-scaled.sh and tools/scaled/*.sh (sourced, not run): the names, addresses and
# folders of the scaled deployment (docs/design/scale-out.md §5).
#
#   FABRIKAM_NETNS_PREFIX   namespace prefix (default fab): fab-sw, fab-data, fab-a, fab-b, fab-load
#   FABRIKAM_SCALED_DIR     state: pids, logs, the PostgreSQL cluster, the NATS store
#                           (default /tmp/fabrikam-scaled-<prefix>)
#   FABRIKAM_REPLICAS       service hosts, 1 to 4 (default 2): a, b, c, d
P=${FABRIKAM_NETNS_PREFIX:-fab}
NET=198.18.0                      # RFC 2544's benchmarking range: no real host has these
STATE=${FABRIKAM_SCALED_DIR:-/tmp/fabrikam-scaled-$P}
REPLICAS=${FABRIKAM_REPLICAS:-2}
all_service_hosts=(a b c d)
[[ $REPLICAS =~ ^[1-4]$ ]] || { echo "FABRIKAM_REPLICAS must be 1 to 4, got '$REPLICAS'" >&2; exit 2; }
service_hosts=("${all_service_hosts[@]:0:$REPLICAS}")
DATA_IP=$NET.10
LOAD_IP=$NET.20
# The service hosts' addresses: a .11, b .12, c .13, d .14.
host_ip() { case $1 in a) echo $NET.11 ;; b) echo $NET.12 ;; c) echo $NET.13 ;; d) echo $NET.14 ;;
                       data) echo $DATA_IP ;; load) echo $LOAD_IP ;; *) return 1 ;; esac; }
# Start order of tools/run.sh: leaves first.
services=(accounts package dronescheduler deliveryhistory simulator delivery supervisor workflow ingestion gateway)
PG_BIN=/usr/lib/postgresql/15/bin
STORE_URL="postgresql://app@postgres:5432/fabrikam"
BROKER_URL="nats://nats:4222"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
need_root() { [[ $(id -u) == 0 ]] || { echo "$0: needs root (network namespaces)" >&2; exit 1; }; }
