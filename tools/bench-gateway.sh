#!/usr/bin/env bash
# `make bench-gateway`: a JSON call through the gateway against the same RPC made directly, same
# machine, same run, release build, whole system running.
#
#   direct:  h2load (HTTP/2, gRPC) -> Delivery.GetDeliveryStatus
#   gateway: h2load --h1 (HTTP/1.1, JSON) and h2load (HTTP/2, JSON) -> GET /v1/deliveries/{id}/status
#            -> the same RPC
# Both with CLIENTS connections and one request in flight per connection (HTTP/1.1 cannot
# multiplex), REQUESTS requests each. Reports requests/s, p50/p99, and the p99 the gateway adds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-30000}
CLIENTS=${CLIENTS:-16}
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

cat <<TABLE
h2load -n $REQUESTS -c $CLIENTS (one request in flight per connection), whole system on this machine ($(nproc) cores), release build

| path | requests/s | p50 ms | p99 ms | failed |
|---|---:|---:|---:|---:|
| direct gRPC: Delivery.GetDeliveryStatus (HTTP/2) | $d_rps | $d_p50 | $d_p99 | $d_failed |
| gateway: GET /v1/deliveries/{id}/status (HTTP/1.1 JSON, API key, tenancy check) | $g_rps | $g_p50 | $g_p99 | $g_failed |
| gateway: the same over HTTP/2 (h2c, prior knowledge) | $h_rps | $h_p50 | $h_p99 | $h_failed |
| gateway HTTP/1.1 / direct | $(python3 -c "print(f'{$g_rps/$d_rps:.2f}')") | | +$(python3 -c "print(f'{$g_p99-$d_p99:.2f}')") ms at p99 | |
| gateway HTTP/2 / direct | $(python3 -c "print(f'{$h_rps/$d_rps:.2f}')") | | +$(python3 -c "print(f'{$h_p99-$d_p99:.2f}')") ms at p99 | |
TABLE
