#!/usr/bin/env bash
# `make bench-ingestion`: delivery requests accepted per second, durably, into Ingestion, with the
# whole system running on this machine (release build, every service in its own process).
#
# h2load (nghttp2-client) sends REQUESTS CreateDelivery calls (CLIENTS connections x STREAMS
# streams). Each answer means the request is committed (fsync'd) to the SQLite request queue.
# Then the script waits until every accepted delivery has reached a final stage (Completed, or
# Failed after its saga was compensated) and reports how many did not (must be 0).
# Peer in the same run: the interop server's UnaryCall (no durability) -- the RPC ceiling.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-16}
DRAIN_SECONDS=${DRAIN_SECONDS:-900}
bash tools/install-deps.sh >/dev/null

echo "building (release)" >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
export FABRIKAM_DATA_DIR="$work/data" FABRIKAM_BIN_DIR="$bin" FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-26051}
# A large, fast fleet so the backlog drains in minutes; sagas that find no free drone within
# their retries fail and are compensated (a final state too).
export FABRIKAM_DRONES=${FABRIKAM_DRONES:-300} FABRIKAM_TIME_SCALE=${FABRIKAM_TIME_SCALE:-1000} FABRIKAM_TICK_MS=${FABRIKAM_TICK_MS:-200}
export FABRIKAM_LOG_LEVEL=warning
launcher=""
peer=""
cleanup() {
  [[ -n $peer ]] && kill "$peer" 2>/dev/null || true
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
bash tools/bench/create-delivery-request.sh "$work/create.bin"
echo 'response_size: 16 payload { body: "0123456789abcdef" }' \
  | protoc -I proto --encode=grpc.testing.SimpleRequest grpc/testing/messages.proto | frame > "$work/unary.bin"

# Runs h2load; prints "rps p50_ms p99_ms failed".
load() { # port path body
  local log="$work/h2load.log"
  local out; out=$(h2load -c "$CLIENTS" -m "$STREAMS" -n "$REQUESTS" -d "$3" -H "content-type: application/grpc" -H "te: trailers" \
    --log-file="$log" "http://127.0.0.1:$1$2")
  local rps; rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  local failed; failed=$(echo "$out" | awk '/^requests:/ {print $10}')
  python3 - "$log" "$rps" "$failed" <<'PY'
import sys
lat = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(f"{float(sys.argv[2]):.0f} {pick(0.5):.2f} {pick(0.99):.2f} {sys.argv[3]}")
PY
}

# The peer first: our RPC runtime alone, nothing stored.
"$bin/interop-server" --port 0 > "$work/peer.log" 2>&1 &
peer=$!
for _ in $(seq 1 100); do grep -q listening "$work/peer.log" && break; sleep 0.1; done
peer_port=$(grep -o 'listening 127.0.0.1:[0-9]*' "$work/peer.log" | cut -d: -f2)
read -r peer_rps peer_p50 peer_p99 peer_failed < <(load "$peer_port" /grpc.testing.TestService/UnaryCall "$work/unary.bin")
kill "$peer"; peer=""

bash tools/run.sh --no-build > "$work/run.log" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do grep -q "system up" "$work/run.log" && break; sleep 0.1; done
grep -q "system up" "$work/run.log" || { cat "$work/run.log"; exit 1; }
sleep 2  # the simulator registers its fleet
ingestion_port=$((FABRIKAM_PORT_BASE + 5))
read -r rps p50 p99 failed < <(load "$ingestion_port" /fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery "$work/create.bin")

accepted=$(sqlite3 "$FABRIKAM_DATA_DIR/broker.sqlite" "SELECT COUNT(*) FROM message_log WHERE queue = 'delivery-requests'")
final() { sqlite3 "$FABRIKAM_DATA_DIR/delivery.sqlite" "SELECT COUNT(*) FROM deliveries WHERE stage IN (5, 6, 7)" 2>/dev/null || echo 0; }
start=$(date +%s)
while (( $(final) < accepted )) && (( $(date +%s) - start < DRAIN_SECONDS )); do sleep 5; done
drain=$(( $(date +%s) - start ))
completed=$(sqlite3 "$FABRIKAM_DATA_DIR/delivery.sqlite" "SELECT COUNT(*) FROM deliveries WHERE stage = 5")
failedDeliveries=$(sqlite3 "$FABRIKAM_DATA_DIR/delivery.sqlite" "SELECT COUNT(*) FROM deliveries WHERE stage = 7")
notFinal=$(( accepted - $(final) ))

cat <<TABLE
h2load -n $REQUESTS -c $CLIENTS -m $STREAMS, whole system on this machine ($(nproc) cores), release build

| call | requests/s | p50 ms | p99 ms | failed requests |
|---|---:|---:|---:|---:|
| Ingestion.CreateDelivery (durable: fsync'd to the SQLite queue) | $rps | $p50 | $p99 | $failed |
| peer: interop UnaryCall (our runtime, nothing stored) | $peer_rps | $peer_p50 | $peer_p99 | $peer_failed |

accepted: $accepted; reached a final stage within ${drain}s: completed $completed, failed (compensated) $failedDeliveries; never reached a final stage: $notFinal
TABLE
