#!/usr/bin/env bash
# `make bench-load-levelling`: queue-based load levelling under twice the fleet's capacity.
#
# The whole system runs (release build, every service in its own process) with the default
# fleet of 12 drones at time scale 40. First the fleet's capacity is measured: CALIBRATION
# deliveries offered at once, completions per second in the steady part of the run. Then
# deliveries are offered at RATE_FACTOR (2) times that capacity for DURATION (60) seconds, at
# a fixed rate (grpcio, one call every 1/rate s, not waiting for answers), and the script waits
# until every accepted delivery has reached a final stage. Reported: accepted, completed, failed,
# never final, order violations (deliveries that got their drone after one accepted later), and
# the wait from acceptance to drone assignment (p50/p90/p99/max).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-60}
RATE_FACTOR=${RATE_FACTOR:-2}
CALIBRATION=${CALIBRATION:-48}
DRAIN_SECONDS=${DRAIN_SECONDS:-900}
bash tools/install-deps.sh >/dev/null

echo "building (release)" >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
export FABRIKAM_DATA_DIR="$work/data" FABRIKAM_BIN_DIR="$bin" FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-27051}
export FABRIKAM_DRONES=${FABRIKAM_DRONES:-12} FABRIKAM_TIME_SCALE=${FABRIKAM_TIME_SCALE:-40} FABRIKAM_TICK_MS=${FABRIKAM_TICK_MS:-200}
export FABRIKAM_LOG_LEVEL=warning
launcher=""
cleanup() {
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat <<'TEXT' | protoc -I proto -I /usr/include --encode=fabrikam.dronedelivery.ingestion.v1.CreateDeliveryRequest \
    fabrikam/dronedelivery/ingestion/v1/ingestion.proto > "$work/create.bin"
owner { account_id: "acct-demo" user_id: "bench" }
pickup_location { latitude: 47.6101 longitude: -122.3421 }
dropoff_location { latitude: 47.6205 longitude: -122.3493 }
package_info { size: PACKAGE_SIZE_SMALL weight: 1.5 }
TEXT

bash tools/run.sh --no-build > "$work/run.log" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do grep -q "system up" "$work/run.log" && break; sleep 0.1; done
grep -q "system up" "$work/run.log" || { cat "$work/run.log"; exit 1; }
sleep 2  # the simulator registers its fleet

.venv/bin/python - "$work" "$((FABRIKAM_PORT_BASE + 5))" "$DURATION" "$RATE_FACTOR" "$CALIBRATION" "$DRAIN_SECONDS" "$FABRIKAM_DRONES" "$FABRIKAM_TIME_SCALE" <<'PY'
import sqlite3, sys, time, threading
import grpc

work, port, duration, factor, calibration, drain, drones, scale = sys.argv[1:9]
duration, factor, calibration, drain = float(duration), float(factor), int(calibration), float(drain)
data = f"{work}/data"
body = open(f"{work}/create.bin", "rb").read()
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
create = channel.unary_unary("/fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery",
                             request_serializer=None, response_deserializer=None)

def delivery_id(answer):
    # CreateDeliveryResponse field 1 (delivery_id): tag 0x0a, one-byte length (ids are short).
    assert answer[0] == 0x0A and answer[1] < 128
    return answer[2:2 + answer[1]].decode()

def offer(count, rate):
    """Sends `count` requests, one every 1/rate s (all at once if rate is None); returns accepted ids."""
    accepted, failed, lock = [], [0], threading.Lock()
    def done(future):
        try:
            result = delivery_id(future.result())
            with lock: accepted.append(result)
        except Exception:
            with lock: failed[0] += 1
    start = time.monotonic()
    for index in range(count):
        if rate:
            pause = start + index / rate - time.monotonic()
            if pause > 0: time.sleep(pause)
        create.future(body, timeout=30).add_done_callback(done)
    while len(accepted) + failed[0] < count: time.sleep(0.01)
    return accepted, failed[0]

def query(file, sql, args=()):
    connection = sqlite3.connect(f"file:{data}/{file}?mode=ro", uri=True, timeout=30)
    try: return connection.execute(sql, args).fetchall()
    finally: connection.close()

def stages(ids):
    rows = dict(query("delivery.sqlite", "SELECT delivery_id, stage FROM deliveries"))
    return [rows.get(i) for i in ids]

def wait_final(ids, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if all(s in (5, 6, 7) for s in stages(ids)): break
        time.sleep(1)
    return time.monotonic() - start

def completion_times(ids):
    # The tracking event of the completion: its time is when the drone dropped the package off.
    wanted = set(ids)
    rows = query("delivery.sqlite", "SELECT delivery_id, update_time FROM deliveries WHERE stage = 5")
    return sorted(t for d, t in rows if d in wanted)

# 1. The fleet's capacity: many deliveries at once; completions per second once every drone is busy.
calibrating, _ = offer(calibration, None)
wait_final(calibrating, drain)
done = completion_times(calibrating)
steady = done[int(drones):]  # past the first round, which starts from the drones' home positions
capacity = (len(steady) - 1) / (steady[-1] - steady[0])
rate = factor * capacity

# 2. The load: `factor` x capacity for `duration` seconds, at a fixed rate.
count = int(rate * duration)
load_start = time.time()
accepted, refused = offer(count, rate)
offered_seconds = time.time() - load_start
drained = wait_final(accepted, drain)

final = stages(accepted)
completed = sum(1 for s in final if s == 5)
failed = sum(1 for s in final if s == 7)
cancelled = sum(1 for s in final if s == 6)
never = len(accepted) - completed - failed - cancelled
wanted = set(accepted)
accept_time = {k: t for k, t in query("broker.sqlite", "SELECT key, enqueue_time FROM message_log WHERE queue = 'delivery-requests'") if k in wanted}
assign_time = {}
for d, t in query("dronescheduler.sqlite", "SELECT delivery_id, MIN(assign_time) FROM assignments GROUP BY delivery_id"):
    if d in wanted: assign_time[d] = t
both = sorted((accept_time[d], assign_time[d]) for d in accepted if d in accept_time and d in assign_time)
waits = sorted(b - a for a, b in both)
# An order violation: a delivery that got its drone after one that was accepted later.
violations = 0
later_min = float("inf")
for accepted_at, assigned_at in reversed(both):
    if assigned_at > later_min: violations += 1
    later_min = min(later_min, assigned_at)
pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))] if waits else float("nan")
print(f"fleet: {drones} drones at time scale {scale}; capacity measured {capacity:.2f} deliveries/s "
      f"({len(steady)} completions after the first round of {calibration} offered at once)")
print(f"offered: {count} requests at {rate:.2f}/s ({factor:g} x capacity) over {offered_seconds:.1f} s; "
      f"refused by Ingestion: {refused}; drained {drained:.0f} s after the last answer")
print()
print("| accepted | completed | failed | never final | order violations | wait p50 s | p90 s | p99 s | max s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {len(accepted)} | {completed} | {failed} | {never} | {violations} | {pick(0.5):.1f} | {pick(0.9):.1f} | {pick(0.99):.1f} | {waits[-1] if waits else float('nan'):.1f} |")
print()
print("wait: from acceptance (committed to the request queue) to the drone's assignment; "
      "order violation: a delivery assigned a drone after one accepted later")
PY
