#!/usr/bin/env bash
# `make bench-gateway`: a JSON call through the gateway against the same RPC made directly, same
# machine, same run, release build, whole system running.
#
#   direct:  h2load (HTTP/2, gRPC) -> Delivery.GetDeliveryStatus
#   gateway: h2load --h1 (HTTP/1.1, JSON) and h2load (HTTP/2, JSON) -> GET /v1/deliveries/{id}/status
#            -> the same RPC
# Throughput: CLIENTS connections with one request in flight each (HTTP/1.1 cannot multiplex),
# REQUESTS requests, as fast as they go. Latency added: the same paths at a fixed offered load of
# RATE requests/s (h2load --rps), well below either path's capacity, so the difference in p50/p99
# is the gateway's own work rather than queueing behind a saturated CPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-30000}
CLIENTS=${CLIENTS:-16}
RATE=${RATE:-3200}
RATE_SECONDS=${RATE_SECONDS:-5}
bash tools/install-deps.sh >/dev/null
echo "building (release)" >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
export FABRIKAM_DATA_DIR="$work/data" FABRIKAM_BIN_DIR="$bin" FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-47051} FABRIKAM_LOG_LEVEL=warning
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
h2load -n 2000 -c "$CLIENTS" -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" \
  "http://127.0.0.1:$delivery/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus" >/dev/null
out=$(h2load -n "$REQUESTS" -c "$CLIENTS" -m 1 -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" --log-file="$work/direct.log" \
  "http://127.0.0.1:$delivery/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus")
read -r d_rps d_p50 d_p99 d_failed < <(summarize "$out" "$work/direct.log")
h2load --h1 -n 2000 -c "$CLIENTS" -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status" >/dev/null
out=$(h2load --h1 -n "$REQUESTS" -c "$CLIENTS" -H "Authorization: Bearer $key" --log-file="$work/gateway.log" \
  "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
read -r g_rps g_p50 g_p99 g_failed < <(summarize "$out" "$work/gateway.log")
h2load -n 2000 -c "$CLIENTS" -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status" >/dev/null
out=$(h2load -n "$REQUESTS" -c "$CLIENTS" -m 1 -H "Authorization: Bearer $key" --log-file="$work/gateway2.log" \
  "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
read -r h_rps h_p50 h_p99 h_failed < <(summarize "$out" "$work/gateway2.log")

# Fixed offered load: RATE requests/s spread over the clients, RATE_SECONDS long.
per_client=$(( RATE / CLIENTS )); rated=$(( RATE * RATE_SECONDS ))
out=$(h2load -n "$rated" -c "$CLIENTS" -m 1 --rps="$per_client" -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" \
  --log-file="$work/direct-rate.log" "http://127.0.0.1:$delivery/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus")
read -r dr_rps dr_p50 dr_p99 dr_failed < <(summarize "$out" "$work/direct-rate.log")
out=$(h2load --h1 -n "$rated" -c "$CLIENTS" --rps="$per_client" -H "Authorization: Bearer $key" --log-file="$work/gateway-rate.log" \
  "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
read -r gr_rps gr_p50 gr_p99 gr_failed < <(summarize "$out" "$work/gateway-rate.log")
out=$(h2load -n "$rated" -c "$CLIENTS" -m 1 --rps="$per_client" -H "Authorization: Bearer $key" --log-file="$work/gateway2-rate.log" \
  "http://127.0.0.1:$gateway/v1/deliveries/$id/status")
read -r hr_rps hr_p50 hr_p99 hr_failed < <(summarize "$out" "$work/gateway2-rate.log")
diff() { python3 -c "print(f'{$1-$2:+.2f}')"; }

cat <<TABLE
Throughput: h2load -n $REQUESTS -c $CLIENTS (one request in flight per connection, as fast as it goes), whole system on this machine ($(nproc) cores), release build

| path | requests/s | p50 ms | p99 ms | failed |
|---|---:|---:|---:|---:|
| direct gRPC: Delivery.GetDeliveryStatus (HTTP/2) | $d_rps | $d_p50 | $d_p99 | $d_failed |
| gateway: GET /v1/deliveries/{id}/status (HTTP/1.1 JSON, API key, tenancy check) | $g_rps | $g_p50 | $g_p99 | $g_failed |
| gateway: the same over HTTP/2 (h2c, prior knowledge) | $h_rps | $h_p50 | $h_p99 | $h_failed |
| gateway HTTP/1.1 / direct | $(python3 -c "print(f'{$g_rps/$d_rps:.2f}')") | | | |
| gateway HTTP/2 / direct | $(python3 -c "print(f'{$h_rps/$d_rps:.2f}')") | | | |

Latency added at a fixed load: $RATE requests/s offered for ${RATE_SECONDS} s (h2load --rps=$per_client per client, $CLIENTS clients)

| path | requests/s | p50 ms | p99 ms | added p50 | added p99 | failed |
|---|---:|---:|---:|---:|---:|---:|
| direct gRPC | $dr_rps | $dr_p50 | $dr_p99 | | | $dr_failed |
| gateway HTTP/1.1 | $gr_rps | $gr_p50 | $gr_p99 | $(diff $gr_p50 $dr_p50) ms | $(diff $gr_p99 $dr_p99) ms | $gr_failed |
| gateway HTTP/2 | $hr_rps | $hr_p50 | $hr_p99 | $(diff $hr_p50 $dr_p50) ms | $(diff $hr_p99 $dr_p99) ms | $hr_failed |
TABLE
