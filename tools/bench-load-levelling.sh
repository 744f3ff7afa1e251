#!/usr/bin/env bash
# `make bench-load-levelling`: queue-based load levelling under twice the fleet's capacity,
# against a baseline in the same run.
#
# The whole system runs (release build, every service in its own process, ports from
# FABRIKAM_PORT_BASE, default 15300) with a fleet of 12 drones at time scale 40. First the fleet's
# capacity is measured: CALIBRATION deliveries offered at once, completions per second after the
# first round. Then, each on a fresh system, two rounds offer deliveries at RATE_FACTOR (2) times
# that capacity for DURATION (60) seconds, at a fixed rate (grpcio, one call every 1/rate s, not
# waiting for answers), and wait (at most DRAIN_SECONDS) until every accepted delivery is final:
#   line      the landed code: a delivery with no drone free waits in Drone Scheduler's line
#   no line   the baseline: Workflow started with --drone-line 0, so "no drone free" is a step
#             failure retried with backoff (8 attempts), the behaviour before the line existed
# Reported per round: accepted, completed, failed, never final, order violations (deliveries that
# got their drone after one accepted later), and the wait from acceptance to drone assignment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-60}
RATE_FACTOR=${RATE_FACTOR:-2}
CALIBRATION=${CALIBRATION:-48}
DRAIN_SECONDS=${DRAIN_SECONDS:-600}
bash tools/install-deps.sh >/dev/null

echo "building (release)" >&2
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
export FABRIKAM_BIN_DIR="$bin" FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-15300}
export FABRIKAM_DRONES=${FABRIKAM_DRONES:-12} FABRIKAM_TIME_SCALE=${FABRIKAM_TIME_SCALE:-40} FABRIKAM_TICK_MS=${FABRIKAM_TICK_MS:-200}
export FABRIKAM_LOG_LEVEL=warning
launcher=""
stop_system() {
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; wait "$launcher" 2>/dev/null || true; fi
  launcher=""
}
cleanup() {
  stop_system
  rm -rf "$work"
}
trap cleanup EXIT

# start_system NAME: a fresh system with its data in $work/NAME (extra FABRIKAM_* from the caller).
start_system() {
  export FABRIKAM_DATA_DIR="$work/$1"
  bash tools/run.sh --no-build > "$work/$1.log" 2>&1 &
  launcher=$!
  for _ in $(seq 1 300); do grep -q "system up" "$work/$1.log" && break; sleep 0.1; done
  grep -q "system up" "$work/$1.log" || { cat "$work/$1.log"; exit 1; }
  sleep 2  # the simulator registers its fleet
}

# ingestion.proto imports buf/validate/validate.proto (field rules), which protovalidate ships.
.venv/bin/python tools/protovalidate_descriptor.py "$work/protovalidate.binpb"
cat <<'TEXT' | protoc --descriptor_set_in="$work/protovalidate.binpb" -I proto -I /usr/include --encode=fabrikam.dronedelivery.ingestion.v1.CreateDeliveryRequest \
    fabrikam/dronedelivery/ingestion/v1/ingestion.proto > "$work/create.bin"
owner { account_id: "acct-demo" user_id: "bench" }
pickup_location { latitude: 47.6101 longitude: -122.3421 }
dropoff_location { latitude: 47.6205 longitude: -122.3493 }
package_info { size: PACKAGE_SIZE_SMALL weight: 1.5 }
TEXT

# The load generator: `bench.py calibrate DATA` prints the capacity (deliveries/s);
# `bench.py load DATA RATE LABEL` offers RATE/s for DURATION s and prints the round's table row.
cat > "$work/bench.py" <<'PY'
import os, sqlite3, sys, time, threading
import grpc

mode, data = sys.argv[1], sys.argv[2]
work = os.path.dirname(data)
port = int(os.environ["FABRIKAM_PORT_BASE"]) + 5  # Ingestion (ServicePorts order)
duration, factor = float(os.environ["DURATION"]), float(os.environ["RATE_FACTOR"])
calibration, drain, drones = int(os.environ["CALIBRATION"]), float(os.environ["DRAIN_SECONDS"]), int(os.environ["FABRIKAM_DRONES"])
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

if mode == "calibrate":
    # The fleet's capacity: many deliveries at once; completions per second once every drone is busy.
    calibrating, _ = offer(calibration, None)
    wait_final(calibrating, drain)
    done = completion_times(calibrating)
    steady = done[drones:]  # past the first round, which starts from the drones' home positions
    print(f"{(len(steady) - 1) / (steady[-1] - steady[0]):.4f} {len(steady)}")
    sys.exit(0)

# A round: the given rate for `duration` seconds.
rate, label = float(sys.argv[3]), sys.argv[4]
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
pick = lambda q: f"{waits[min(len(waits) - 1, int(q * len(waits)))]:.1f}" if waits else "-"
print(f"| {label} | {count} in {offered_seconds:.0f} s | {len(accepted)} | {completed} | {failed} | {never} | {violations} | "
      f"{pick(0.5)} | {pick(0.9)} | {pick(0.99)} | {pick(1.0)} | {drained:.0f} |")
PY
export DURATION RATE_FACTOR CALIBRATION DRAIN_SECONDS

start_system calibration
read -r capacity steady < <(.venv/bin/python "$work/bench.py" calibrate "$work/calibration")
stop_system
rate=$(python3 -c "print(f'{$RATE_FACTOR * $capacity:.3f}')")
echo "fleet: $FABRIKAM_DRONES drones at time scale $FABRIKAM_TIME_SCALE; capacity measured $capacity deliveries/s" \
     "($steady completions after the first round of $CALIBRATION offered at once); offered $rate/s ($RATE_FACTOR x capacity) for $DURATION s"
echo
echo "| round | offered | accepted | completed | failed | never final | order violations | wait p50 s | p90 s | p99 s | max s | drain s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
start_system line
.venv/bin/python "$work/bench.py" load "$work/line" "$rate" "line (landed)"
stop_system
FABRIKAM_DRONE_LINE=0 start_system noline
.venv/bin/python "$work/bench.py" load "$work/noline" "$rate" "no line (baseline: --drone-line 0)"
stop_system
echo
echo "wait: from acceptance (committed to the request queue) to the drone's assignment (deliveries that got one);"
echo "order violation: a delivery assigned a drone after one accepted later; drain: from the last answer until every accepted delivery was final"
