#!/usr/bin/env bash
# `make bench-observability`: what metrics and traces cost per unary call on a real service, in
# the same run: five package-service processes (release): metrics and traces both off
# (FABRIKAM_METRICS_PORT=off, which also leaves the per-call metrics interceptors out, and no
# collector), metrics only, traces only, and both on (metrics on an admin port, every call a
# sampled trace exported over OTLP/gRPC to tools/otlp_receiver.py), and both on with one trace in
# ten sampled (FABRIKAM_TRACE_SAMPLE_RATIO=0.1, as a busy fleet runs). Each is pinned to core 0 in
# turn, h2load to core 1, over CLIENTS long-lived connections. Two calls:
# grpc.health.v1.Health/Check (no work of its own: the worst case for the relative cost) and
# PackageService/GetPackage of a missing package (one store read, NOT_FOUND). Server CPU
# microseconds per call from /proc; ROUNDS rounds taking turns (each round in another order),
# each figure the median round. "vs off" is the median of the rounds' own ratios (each mode
# against off in the same round, which cancels what a round shares: the machine's other load),
# with a 95% bootstrap interval of that median: a target is proven when the interval's top is
# under it. Target (issue 17): on costs under 10% more than off.
#
# Every round runs on new processes (RESTART=1, the default; RESTART=0 keeps the first ones):
# round pairing cancels what a round shares, not a process's own luck (its memory layout, how its
# connections fall on its event loops), and two processes of one configuration differed by 2.8%
# [0.7, 4.4] over 30 rounds (CONTROL=1, 2026-12-05), as much as the effect measured; new
# processes each round make that luck part of the rounds' spread instead of a bias of one mode.
# CONTROL=1 adds a process "off (second process)" of the same configuration as off: its ratio to
# off shows how far two identical processes differ. MODES and CALLS pick a subset (MODES="off on",
# CALLS=check).
#
# Not a test (no timing assertions anywhere): a measurement to run by hand, on a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-16}
ROUNDS=${ROUNDS:-3}
CONTROL=${CONTROL:-0}
RESTART=${RESTART:-1}
MODES=${MODES:-off metrics traces on sampled}
CALLS=${CALLS:-check get}
[[ " $MODES " == *" off "* ]] || { echo "MODES must include off (every ratio is against it)" >&2; exit 1; }
[[ "$CONTROL" == 1 ]] && MODES="$MODES off2"
python=${PYTHON:-$root/.venv/bin/python}

command -v h2load >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null; }
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

swift build -c release --product package-service >/dev/null
server_binary="$(swift build -c release --show-bin-path)/package-service"

frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
printf '' | frame > "$work/check.bin"  # an empty HealthCheckRequest: the server's overall health
# proto/ imports buf/validate/validate.proto, which protoc finds in this descriptor set (as in bench-gateway.sh).
"$python" tools/protovalidate_descriptor.py "$work/protovalidate.binpb"
echo 'package_id: "bench-no-such-package"' \
  | protoc --descriptor_set_in="$work/protovalidate.binpb" -I proto -I /usr/include \
      --encode=fabrikam.dronedelivery.package.v1.GetPackageRequest fabrikam/dronedelivery/package/v1/package.proto | frame > "$work/get.bin"

# The collector: the test suite's receiver (grpcio with OpenTelemetry's generated code), which
# decodes every export but writes only each one's span count (--count-only). On h2load's core:
# what it spends is not the server's, and must not take the server's core. Until 2026-12-05 it
# also wrote every span as a JSON line: at some 50,000 spans a second that took most of h2load's
# core, h2load then sent less at a time, and the server's CPU per call rose in the traced modes
# for that reason alone (Health/Check, both on: +2.0 µs a call over metrics only with that
# receiver, +1.0 µs with this one, in the same profile runs).
taskset -c 1 "$python" tools/otlp_receiver.py "$work/spans.txt" --count-only --max-seconds 3600 > "$work/receiver.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do grep -q "^listening on " "$work/receiver.log" && break; sleep 0.1; done
collector_port=$(grep -o '^listening on [0-9]*' "$work/receiver.log" | awk '{print $3}')
[[ -n "$collector_port" ]] || { echo "the OTLP receiver did not start" >&2; cat "$work/receiver.log" >&2; exit 1; }

# Prints pid:port (run in a command substitution: the caller records the pid, see bench-tls.sh).
start_server() { # name, env...
  local name=$1; shift
  mkdir -p "$work/$name"
  env FABRIKAM_LOG_LEVEL=warning FABRIKAM_DRAIN_MS=0 "$@" taskset -c 0 "$server_binary" --port 0 --data-dir "$work/$name" > "$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if grep -q "listening on 127.0.0.1:" "$work/$name.log"; then
      echo "$pid:$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/$name.log" | head -1 | cut -d: -f2)"
      return
    fi
    sleep 0.1
  done
  echo "$name did not start" >&2; cat "$work/$name.log" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# h2load against one server; prints "rps cpu_us_per_call". A call that ends NOT_FOUND is still an
# HTTP 200 with grpc-status in the trailers, so h2load counts it as succeeded.
load() { # pid url body requests
  local pid=$1 url=$2 body=$3 requests=$4
  local before after out rps succeeded
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 h2load -c "$CLIENTS" -m "$STREAMS" -d "$body" -H "content-type: application/grpc" -H "te: trailers" -n "$requests" "$url")
  after=$(cpu_ticks "$pid")
  rps=$(grep -o 'finished in [0-9.]*[a-z]*, [0-9.]* req/s' <<< "$out" | awk '{print $4}')
  succeeded=$(grep -o '[0-9]* succeeded' <<< "$out" | awk '{print $1}')
  [[ "$succeeded" -gt 0 ]] || { echo "no request succeeded against $url:" >&2; echo "$out" >&2; exit 1; }
  python3 -c "print(f'{float($rps):.0f} {($after - $before) / $(getconf CLK_TCK) * 1e6 / $succeeded:.1f}')"
}

# One server per mode: both off, each alone (which of the two costs what), both on, sampled.
servers=()
start_mode() { # mode, env...
  local mode=$1 pid port; shift
  IFS=: read -r pid port < <(start_server "$mode" "$@")
  pids+=("$pid")
  servers+=("$mode:$pid:$port")
}
check=/grpc.health.v1.Health/Check
get=/fabrikam.dronedelivery.package.v1.PackageService/GetPackage
start_all() {
  servers=()
  for mode in $MODES; do
    case $mode in
      off | off2) start_mode "$mode" FABRIKAM_METRICS_PORT=off FABRIKAM_OTLP_ENDPOINT=off ;;
      metrics) start_mode metrics FABRIKAM_METRICS_PORT=0 FABRIKAM_OTLP_ENDPOINT=off ;;
      traces) start_mode traces FABRIKAM_METRICS_PORT=off FABRIKAM_OTLP_ENDPOINT="127.0.0.1:$collector_port" FABRIKAM_TRACE_SAMPLE_RATIO=1 ;;
      on) start_mode on FABRIKAM_METRICS_PORT=0 FABRIKAM_OTLP_ENDPOINT="127.0.0.1:$collector_port" FABRIKAM_TRACE_SAMPLE_RATIO=1 ;;
      sampled) start_mode sampled FABRIKAM_METRICS_PORT=0 FABRIKAM_OTLP_ENDPOINT="127.0.0.1:$collector_port" FABRIKAM_TRACE_SAMPLE_RATIO=0.1 ;;
      *) echo "unknown mode $mode (off, metrics, traces, on, sampled)" >&2; exit 1 ;;
    esac
  done
  local entry pid port
  for entry in "${servers[@]}"; do  # warm-up, and a check that each answers
    IFS=: read -r _ pid port <<< "$entry"
    if [[ " $CALLS " == *" check "* ]]; then load "$pid" "http://127.0.0.1:$port$check" "$work/check.bin" 20000 >/dev/null; fi
    if [[ " $CALLS " == *" get "* ]]; then load "$pid" "http://127.0.0.1:$port$get" "$work/get.bin" 20000 >/dev/null; fi
  done
}
stop_all() {
  local entry pid
  for entry in "${servers[@]}"; do
    IFS=: read -r _ pid _ <<< "$entry"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done
}

results=${RESULTS:-$work/results}  # RESULTS=file keeps every measurement (round, call-mode, calls/s, µs per call)
: > "$results"
start_all
count=${#servers[@]}
for round in $(seq 1 "$ROUNDS"); do
  # RESTART=1: every round on new processes (see the top), the last round's stopped first.
  if [[ "$RESTART" == 1 && "$round" -gt 1 ]]; then stop_all; start_all; fi
  # One call's modes back to back, then the other's: each measurement follows one of the same
  # call (the runs that measured each process's two calls in a row gave Health/Check's traced
  # modes higher and wider ratios than runs of Health/Check alone).
  for call in $CALLS; do
    case $call in check) path=$check body="$work/check.bin" ;; get) path=$get body="$work/get.bin" ;; *) echo "unknown call $call (check, get)" >&2; exit 1 ;; esac
    for turn in $(seq 0 $((count - 1))); do  # each round starts one server later: no mode always first
      IFS=: read -r mode pid port <<< "${servers[$(((turn + round) % count))]}"
      echo "$round $call-$mode $(load "$pid" "http://127.0.0.1:$port$path" "$body" "$REQUESTS")" >> "$results"
    done
  done
  echo "round $round done" >&2
done
spans=$(awk '{total += $1} END {print total + 0}' "$work/spans.txt" 2>/dev/null || echo 0)

python3 - "$results" "$REQUESTS" "$CLIENTS" "$STREAMS" "$spans" <<'PY'
import random, statistics, sys
rows, by_round = {}, {}
for line in open(sys.argv[1]):
    round_, kind, rps, cpu = line.split()
    rows.setdefault(kind, []).append((float(rps), float(cpu)))
    by_round.setdefault(kind, {})[round_] = float(cpu)
median = lambda kind, i: statistics.median(r[i] for r in rows[kind])
def ratios(kind, off):  # this mode's CPU per call over off's, round by round
    return [by_round[kind][r] / by_round[off][r] for r in by_round[kind] if r in by_round[off]]
def interval(values):  # 95% bootstrap interval of the median
    rng = random.Random(17)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(2000))
    return medians[50], medians[1949]
rounds = len(next(iter(by_round.values())))
print(f"package-service, {sys.argv[2]} calls per figure over {sys.argv[3]} connections x {sys.argv[4]} streams, {rounds} rounds; "
      f"server CPU per call (median of rounds); vs off: median of the rounds' ratios [95% interval]; {sys.argv[5]} spans reached the collector\n")
print("| call | metrics and traces | calls/s | server CPU µs/call | vs off [95% interval] |")
print("|---|---|---:|---:|---:|")
for call, name in [("check", "Health/Check"), ("get", "GetPackage (NOT_FOUND)")]:
    for mode, label in [("off", "off"), ("off2", "off (second process: the control)"), ("metrics", "metrics only"), ("traces", "traces only (every call sampled)"),
                        ("on", "both on (every call sampled)"), ("sampled", "both on (1 call in 10 sampled)")]:
        kind = f"{call}-{mode}"
        if kind not in rows:
            continue
        if mode == "off":
            shown = "1.00x"
        else:
            values = ratios(kind, f"{call}-off")
            low, high = interval(values)
            shown = f"{statistics.median(values):.3f}x [{low:.3f}, {high:.3f}]"
        print(f"| {name} | {label} | {median(kind, 0):.0f} | {median(kind, 1):.1f} | {shown} |")
PY
