#!/usr/bin/env bash
# `make bench-gateway`: a JSON call through the gateway against the same RPC made directly, same
# machine, same run, release build, whole system running.
#
#   direct:  h2load (HTTP/2, gRPC) -> Delivery.GetDeliveryStatus
#   gateway: h2load --h1 (HTTP/1.1, JSON) and h2load (HTTP/2, JSON) -> GET /v1/deliveries/{id}/status
#            -> the same RPC
# Throughput: CLIENTS connections with one request in flight each (HTTP/1.1 cannot multiplex),
# REQUESTS requests, as fast as they go. Latency added: the same paths at fixed offered loads
# (h2load --rps), below either path's capacity, so the difference in p50/p99 is the gateway's own
# work rather than queueing behind a saturated CPU: a light load (one connection, LIGHT_RATE/s)
# and a moderate one (CLIENTS connections, RATE/s in all; h2load's clients fire together, so
# requests arrive in bursts of CLIENTS).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-30000}
CLIENTS=${CLIENTS:-16}
RATE=${RATE:-3200}
LIGHT_RATE=${LIGHT_RATE:-500}
RATE_SECONDS=${RATE_SECONDS:-5}
bash tools/install-deps.sh >/dev/null
echo "building (release)" >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
export FABRIKAM_DATA_DIR="$work/data" FABRIKAM_BIN_DIR="$bin" FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-27051} FABRIKAM_LOG_LEVEL=warning
config="$work/gateway.json"
echo '{"rateLimit":{"requestsPerSecond":1000000,"burst":1000000}}' > "$config"
export FABRIKAM_GATEWAY_CONFIG="$config"
launcher=""
cleanup() {
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
bash tools/run.sh --no-build > "$work/run.log" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do grep -q "system up" "$work/run.log" && break; sleep 0.1; done
grep -q "system up" "$work/run.log" || { cat "$work/run.log"; exit 1; }
gateway=$((FABRIKAM_PORT_BASE + 9))
delivery=$((FABRIKAM_PORT_BASE + 3))
key=fdk_local_demo_key

# One delivery to read.
id=$(curl -s -X POST "http://127.0.0.1:$gateway/v1/deliveries" -H "Authorization: Bearer $key" \
  -d '{"pickupLocation":{"latitude":47.6101,"longitude":-122.3421},"dropoffLocation":{"latitude":47.6205,"longitude":-122.3493},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["deliveryId"])')
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$gateway/v1/deliveries/$id/status" -H "Authorization: Bearer $key" | grep -q COMPLETED && break
  sleep 0.5
done

frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
echo "delivery_id: \"$id\"" | protoc -I proto -I /usr/include --encode=fabrikam.dronedelivery.delivery.v1.GetDeliveryStatusRequest \
  fabrikam/dronedelivery/delivery/v1/delivery.proto | frame > "$work/status.bin"

summarize() { # h2load output, log -> "rps p50 p99 failed"
  local rps; rps=$(echo "$1" | awk '/^finished in/ {print $4}')
  local failed; failed=$(echo "$1" | awk '/^requests:/ {print $10}')
  python3 - "$2" "$rps" "$failed" <<'PY'
import sys
lat = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{float(sys.argv[2]):.0f} {pick(0.5):.2f} {pick(0.99):.2f} {sys.argv[3]}")
PY
}
direct_load() { h2load "$@" -m 1 -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" \
  "http://127.0.0.1:$delivery/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus"; }
gateway_h1_load() { h2load --h1 "$@" -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status"; }
gateway_h2_load() { h2load "$@" -m 1 -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status"; }
for path in direct gateway_h1 gateway_h2; do "${path}_load" -n 2000 -c "$CLIENTS" >/dev/null; done  # warm-up

# Throughput in ROUNDS rounds, each running the three paths in turn: the machine's speed drifts
# (other tenants), and interleaving exposes every path to the same drift. Reported: the median
# round of each path; p50/p99 over all rounds' requests.
ROUNDS=${ROUNDS:-3}
per_round=$(( REQUESTS / ROUNDS ))
declare -A rates
for round in $(seq 1 "$ROUNDS"); do
  for path in direct gateway_h1 gateway_h2; do
    out=$("${path}_load" -n "$per_round" -c "$CLIENTS" --log-file="$work/$path-$round.log")
    rates[$path]+="$(echo "$out" | awk '/^finished in/ {print $4}') "
    cat "$work/$path-$round.log" >> "$work/$path.log"
    failed=$(echo "$out" | awk '/^requests:/ {print $10}')
    if [ "$failed" != 0 ]; then echo "$path round $round: $failed requests failed" >&2; fi
  done
done
median_round() { # path -> "rps p50 p99"
  python3 - "$work/$1.log" ${rates[$1]} <<'PY'
import statistics, sys
lat = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{statistics.median(float(r) for r in sys.argv[2:]):.0f} {pick(0.5):.2f} {pick(0.99):.2f}")
PY
}
read -r d_rps d_p50 d_p99 < <(median_round direct)
read -r g_rps g_p50 g_p99 < <(median_round gateway_h1)
read -r h_rps h_p50 h_p99 < <(median_round gateway_h2)

# Fixed offered loads, RATE_SECONDS long each: "light" on one connection, "moderate" over CLIENTS.
fixed_load() { # clients rate -> "direct gateway-h1 gateway-h2" summaries, one per line
  local clients=$1 rate=$2 per_client=$(( $2 / $1 )) count=$(( $2 * RATE_SECONDS )) out
  out=$(h2load -n "$count" -c "$clients" -m 1 --rps="$per_client" -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" \
    --log-file="$work/rate-d.log" "http://127.0.0.1:$delivery/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus")
  summarize "$out" "$work/rate-d.log"
  out=$(h2load --h1 -n "$count" -c "$clients" --rps="$per_client" -H "Authorization: Bearer $key" --log-file="$work/rate-g.log" \
    "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
  summarize "$out" "$work/rate-g.log"
  out=$(h2load -n "$count" -c "$clients" -m 1 --rps="$per_client" -H "Authorization: Bearer $key" --log-file="$work/rate-h.log" \
    "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
  summarize "$out" "$work/rate-h.log"
}
{ read -r lr_rps lr_p50 lr_p99 lr_failed; read -r lg_rps lg_p50 lg_p99 lg_failed; read -r lh_rps lh_p50 lh_p99 lh_failed; } < <(fixed_load 1 "$LIGHT_RATE")
{ read -r dr_rps dr_p50 dr_p99 dr_failed; read -r gr_rps gr_p50 gr_p99 gr_failed; read -r hr_rps hr_p50 hr_p99 hr_failed; } < <(fixed_load "$CLIENTS" "$RATE")
delta() { python3 -c "print(f'{$1-$2:+.2f}')"; }

cat <<TABLE
Throughput: $ROUNDS rounds of h2load -n $per_round -c $CLIENTS per path (one request in flight per connection, as fast as it goes), whole system on this machine ($(nproc) cores), release build; rounds per path: direct ${rates[direct]}/ HTTP/1.1 ${rates[gateway_h1]}/ HTTP/2 ${rates[gateway_h2]}

| path | requests/s (median round) | p50 ms | p99 ms |
|---|---:|---:|---:|
| direct gRPC: Delivery.GetDeliveryStatus (HTTP/2) | $d_rps | $d_p50 | $d_p99 |
| gateway: GET /v1/deliveries/{id}/status (HTTP/1.1 JSON, API key, tenancy check) | $g_rps | $g_p50 | $g_p99 |
| gateway: the same over HTTP/2 (h2c, prior knowledge) | $h_rps | $h_p50 | $h_p99 |
| gateway HTTP/1.1 / direct | $(python3 -c "print(f'{$g_rps/$d_rps:.2f}')") | | |
| gateway HTTP/2 / direct | $(python3 -c "print(f'{$h_rps/$d_rps:.2f}')") | | |

Latency added at fixed loads, ${RATE_SECONDS} s each (h2load --rps)

| load | path | requests/s | p50 ms | p99 ms | added p50 | added p99 | failed |
|---|---|---:|---:|---:|---:|---:|---:|
| light: 1 connection, $LIGHT_RATE/s | direct gRPC | $lr_rps | $lr_p50 | $lr_p99 | | | $lr_failed |
| | gateway HTTP/1.1 | $lg_rps | $lg_p50 | $lg_p99 | $(delta $lg_p50 $lr_p50) ms | $(delta $lg_p99 $lr_p99) ms | $lg_failed |
| | gateway HTTP/2 | $lh_rps | $lh_p50 | $lh_p99 | $(delta $lh_p50 $lr_p50) ms | $(delta $lh_p99 $lr_p99) ms | $lh_failed |
| moderate: $CLIENTS connections, $RATE/s in bursts of $CLIENTS | direct gRPC | $dr_rps | $dr_p50 | $dr_p99 | | | $dr_failed |
| | gateway HTTP/1.1 | $gr_rps | $gr_p50 | $gr_p99 | $(delta $gr_p50 $dr_p50) ms | $(delta $gr_p99 $dr_p99) ms | $gr_failed |
| | gateway HTTP/2 | $hr_rps | $hr_p50 | $hr_p99 | $(delta $hr_p50 $dr_p50) ms | $(delta $hr_p99 $dr_p99) ms | $hr_failed |
TABLE
