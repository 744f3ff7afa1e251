#!/usr/bin/env bash
# `make bench-rpc`: our RPC runtime against grpc C++ on the same TestService calls, same run,
# same machine: the server pinned to core 0, h2load (nghttp2-client) pinned to core 1.
#
# For each server and call (UnaryCall with a small payload; StreamingOutputCall with 10 small
# responses) it reports requests/s, server CPU microseconds per request (from /proc), and p50/p99
# latency (from h2load's per-request log), then memory per idle connection, per open stream,
# and kept per closed connection.
# Bounded: a fixed number of requests per run. Prints a markdown table (ratios against grpc C++).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-16}

bash tools/install-deps.sh

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The peer (grpc C++) and the load generator come from Debian; nothing else needs them.
bash tools/bench/build-grpc-peer.sh "$work"
echo "building our interop server (release)" >&2
swift build -c release --product interop-server >/dev/null
ours="$(swift build -c release --show-bin-path)/interop-server"

# Request bodies: one length-prefixed gRPC message each.
frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
echo 'response_size: 16 payload { body: "0123456789abcdef" }' \
  | protoc -I proto --encode=grpc.testing.SimpleRequest grpc/testing/messages.proto | frame > "$work/unary.bin"
python3 -c 'print("\n".join(["response_parameters { size: 16 }"] * 10))' \
  | protoc -I proto --encode=grpc.testing.StreamingOutputCallRequest grpc/testing/messages.proto | frame > "$work/stream.bin"

start_server() { # log, command... ; prints pid:port
  local log=$1; shift
  taskset -c 0 "$@" > "$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    if grep -q "listening 127.0.0.1:" "$log"; then
      echo "$pid:$(grep -o 'listening 127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2)"
      return
    fi
    sleep 0.1
  done
  echo "server did not start: $*" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Runs h2load; prints "rps cpu_us_per_request p50_ms p99_ms".
load() { # pid port path body
  local pid=$1 port=$2 path=$3 body=$4 log="$work/h2load.log"
  local args=(-c "$CLIENTS" -m "$STREAMS" -d "$body" -H "content-type: application/grpc" -H "te: trailers")
  taskset -c 1 h2load "${args[@]}" -n 20000 "http://127.0.0.1:$port$path" >/dev/null  # warm-up
  local before; before=$(cpu_ticks "$pid")
  local out; out=$(taskset -c 1 h2load "${args[@]}" -n "$REQUESTS" --log-file="$log" "http://127.0.0.1:$port$path")
  local after; after=$(cpu_ticks "$pid")
  local rps; rps=$(grep -o 'finished in [0-9.]*[a-z]*, [0-9.]* req/s' <<< "$out" | awk '{print $4}')
  local done_; done_=$(grep -o '[0-9]* succeeded' <<< "$out" | awk '{print $1}')
  local ticks_per_second; ticks_per_second=$(getconf CLK_TCK)
  python3 - "$log" "$rps" "$done_" "$before" "$after" "$ticks_per_second" "$(( CLIENTS * STREAMS ))" <<'PY'
import sys
log, rps, done, before, after, hz, ramp = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
# Latency leaves out each run's first CLIENTS x STREAMS requests: they wait for h2load's fresh
# connections to be set up (tens of ms, against both servers alike), which is not a call's latency.
rows = sorted((int(line.split()[0]), int(line.split()[2])) for line in open(log) if line.strip())  # start, microseconds
durations = sorted(duration for _, duration in rows[ramp:])
p = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))] / 1000.0
cpu_us = (after - before) / hz * 1e6 / max(done, 1)
print(f"{rps:.0f} {cpu_us:.1f} {p(0.50):.2f} {p(0.99):.2f}")
PY
}

# Latency below saturation: UnaryCall at a fixed LATENCY_RATE requests/s (h2load --rps over
# CLIENTS connections, one call in flight each, opened 1 ms apart so their timers keep different
# phases), LATENCY_SECONDS long. At saturation p99 measures h2load's queue of CLIENTS x STREAMS
# calls; here it measures the server. Prints "p50_ms p99_ms".
LATENCY_RATE=${LATENCY_RATE:-20000}
LATENCY_SECONDS=${LATENCY_SECONDS:-5}
fixed_load() { # port path body
  local log="$work/fixed.log"
  rm -f "$log"  # h2load appends to its log file
  taskset -c 1 h2load -c "$CLIENTS" -m 1 -r 1 --rate-period=1ms --rps=$(( LATENCY_RATE / CLIENTS )) -n $(( LATENCY_RATE * LATENCY_SECONDS )) \
    -d "$3" -H "content-type: application/grpc" -H "te: trailers" --log-file="$log" "http://127.0.0.1:$1$2" >/dev/null
  python3 - "$log" <<'PY'
import sys
durations = sorted(int(line.split()[2]) for line in open(sys.argv[1]) if line.strip())
p = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))] / 1000.0
print(f"{p(0.50):.3f} {p(0.99):.3f}")
PY
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Memory: RSS added by 300 idle connections, then by 300 open streams (unary calls whose request
# has not arrived yet, which both servers must hold open).
memory() { # pid port ; prints "bytes_per_connection bytes_per_stream"
  "$root/.venv/bin/python" - "$1" "$2" <<'PY'
import socket, sys, time
import h2.config, h2.connection
pid, port = int(sys.argv[1]), int(sys.argv[2])
def rss():
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) * 1024
def connect():
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection(); s.sendall(c.data_to_send()); return s, c
base = rss(); conns = [connect() for _ in range(300)]; time.sleep(1.0); idle = rss()
headers = [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.testing.TestService/UnaryCall"),
           (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")]
s, c = connect()
c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
for _ in range(90):
    c.send_headers(c.get_next_available_stream_id(), headers)
s.sendall(c.data_to_send()); time.sleep(0.5)
extra = [connect() for _ in range(3)]
for es, ec in extra:
    for _ in range(70):
        ec.send_headers(ec.get_next_available_stream_id(), headers)
    es.sendall(ec.data_to_send())
time.sleep(1.0); streams = rss()
print(f"{(idle - base) / 300:.0f} {(streams - idle) / 300:.0f}")
PY
}

# Memory kept after connections close: CHURN_WAVES waves of CHURN_CONNECTIONS connections (one
# UnaryCall each, then closed, h2load), RSS read after every fifth wave; the figure is the slope of
# a least-squares line through those readings, per connection. RSS moves by megabytes from one
# reading to the next (the allocator's free lists), so a single difference says nothing; a server
# that keeps something of each closed connection climbs steadily (until 2026-12-05 ours did, about
# 0.8 KiB per connection: a connection's state referred to itself and was never freed).
CHURN_CONNECTIONS=${CHURN_CONNECTIONS:-500}
CHURN_WAVES=${CHURN_WAVES:-60}
churn() { # pid port body ; prints "bytes_kept_per_closed_connection"
  local pid=$1 port=$2 body=$3 readings=""
  for wave in $(seq 1 "$CHURN_WAVES"); do
    taskset -c 1 h2load -c "$CHURN_CONNECTIONS" -n "$CHURN_CONNECTIONS" -d "$body" -H "content-type: application/grpc" -H "te: trailers" \
      "http://127.0.0.1:$port/grpc.testing.TestService/UnaryCall" >/dev/null
    if (( wave % 5 == 0 )); then sleep 0.5; readings+="$(( wave * CHURN_CONNECTIONS )):$(rss_kb "$pid") "; fi
  done
  python3 -c '
import sys
points = [tuple(map(float, p.split(":"))) for p in sys.argv[1].split()]
n = len(points); mx = sum(x for x, _ in points) / n; my = sum(y for _, y in points) / n
slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
print(f"{slope * 1024:.0f}")' "$readings"
}

# The servers take turns in ROUNDS rounds (one runs at a time, alone on core 0), so drift in the
# machine's speed (other tenants) reaches both alike. Each figure is the median round.
ROUNDS=${ROUNDS:-3}
declare -A result
total=$REQUESTS
REQUESTS=$(( total / ROUNDS ))
for round in $(seq 1 "$ROUNDS"); do
  for server in ours cpp; do
    if [ "$server" = ours ]; then
      spec=$(start_server "$work/ours.log" "$ours" --port 0)
    else
      spec=$(start_server "$work/cpp.log" "$work/grpc_cpp_server" 0)
    fi
    pid=${spec%%:*}; port=${spec##*:}
    pids+=("$pid")  # for the cleanup trap (start_server ran in a subshell)
    # Memory first, on a fresh process: after load the allocator reuses freed memory and RSS hides growth.
    if [ "$round" = 1 ]; then result[$server,memory]="$(memory "$pid" "$port") $(churn "$pid" "$port" "$work/unary.bin")"; fi
    result[$server,unary]+="$(load "$pid" "$port" /grpc.testing.TestService/UnaryCall "$work/unary.bin");"
    result[$server,stream]+="$(load "$pid" "$port" /grpc.testing.TestService/StreamingOutputCall "$work/stream.bin");"
    result[$server,fixed]+="$(fixed_load "$port" /grpc.testing.TestService/UnaryCall "$work/unary.bin");"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
median() { # "a b c d;a b c d;..." -> per-column medians
  python3 -c 'import statistics,sys; rows=[list(map(float,r.split())) for r in sys.argv[1].split(";") if r.strip()]; print(" ".join(f"{statistics.median(c):.2f}" for c in zip(*rows)))' "$1"
}
for server in ours cpp; do
  for call in unary stream fixed; do result[$server,$call]=$(median "${result[$server,$call]}"); done
done
REQUESTS=$total

python3 - "${result[ours,unary]}" "${result[cpp,unary]}" "${result[ours,stream]}" "${result[cpp,stream]}" \
  "${result[ours,memory]}" "${result[cpp,memory]}" "$REQUESTS" "$CLIENTS" "$STREAMS" \
  "${result[ours,fixed]}" "${result[cpp,fixed]}" "$LATENCY_RATE" "$LATENCY_SECONDS" <<'PY'
import sys
ou, cu, os_, cs, om, cm = (list(map(float, a.split())) for a in sys.argv[1:7])
n, c, m = sys.argv[7:10]
of, cf = (list(map(float, a.split())) for a in sys.argv[10:12])
rate, seconds = sys.argv[12:14]
print(f"h2load -n {n} in all per server and call, in rounds taking turns between the servers (median round shown), -c {c} -m {m}; server on core 0, h2load on core 1; p50/p99 from h2load's per-request log, without each run's first {int(c) * int(m)} requests (connection set-up)")
print()
print("| call | server | requests/s | server CPU µs/request | p50 ms | p99 ms |")
print("|---|---|---:|---:|---:|---:|")
for name, ours, cpp in (("UnaryCall (16 B)", ou, cu), ("StreamingOutputCall (10 x 16 B)", os_, cs)):
    print(f"| {name} | ours | {ours[0]:.0f} | {ours[1]:.1f} | {ours[2]:.2f} | {ours[3]:.2f} |")
    print(f"| | grpc C++ | {cpp[0]:.0f} | {cpp[1]:.1f} | {cpp[2]:.2f} | {cpp[3]:.2f} |")
    print(f"| | ours / C++ | {ours[0]/cpp[0]:.2f} | {ours[1]/cpp[1]:.2f} | {ours[2]/cpp[2]:.2f} | {ours[3]/cpp[3]:.2f} |")
print()
print("| memory | ours | grpc C++ |")
print("|---|---:|---:|")
print(f"| per idle connection | {om[0]/1024:.1f} KiB | {cm[0]/1024:.1f} KiB |")
print(f"| per open stream | {om[1]/1024:.1f} KiB | {cm[1]/1024:.1f} KiB |")
print(f"| kept per closed connection (one call each; slope over the churn's waves) | {om[2]/1024:.2f} KiB | {cm[2]/1024:.2f} KiB |")
print()
print(f"UnaryCall at a fixed {rate} requests/s ({c} connections, one call in flight each, {seconds} s per round, median round):")
print()
print("| server | p50 ms | p99 ms |")
print("|---|---:|---:|")
print(f"| ours | {of[0]:.3f} | {of[1]:.3f} |")
print(f"| grpc C++ | {cf[0]:.3f} | {cf[1]:.3f} |")
print(f"| ours / C++ | {of[0]/cf[0]:.2f} | {of[1]/cf[1]:.2f} |")
PY
