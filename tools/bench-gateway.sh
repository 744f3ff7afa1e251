#!/usr/bin/env bash
# `make bench-gateway`: a JSON call through the gateway against the same RPC made directly, same
# machine, same run, release build, whole system running.
#
#   direct:  h2load (HTTP/2, gRPC) -> Delivery.GetDeliveryStatus
#   gateway: h2load --h1 (HTTP/1.1, JSON) and h2load (HTTP/2, JSON) -> GET /v1/deliveries/{id}/status
#            -> the same RPC
#   peer:    h2load (HTTP/2, gRPC) -> nginx (Debian's 1.22, grpc_pass, upstream keep-alive) -> the
#            same RPC: what a proxy hop alone costs on this machine, with none of the gateway's
#            work (no JSON, no API key, no tenancy check). The script fetches Debian's nginx
#            package into .build/peers (apt-get download; nothing is installed or started as a
#            system service) unless nginx is on the PATH.
# Throughput: CONCURRENCY (a list) connections with one request in flight each (HTTP/1.1 cannot
# multiplex), REQUESTS/ROUNDS requests (at least 50 per connection) per round, as fast as they
# go. Latency added: the same paths at fixed offered loads
# (h2load --rps), below every path's capacity, so the difference in p50/p99 is the proxy's own
# work rather than queueing behind a saturated CPU:
#   light:    one connection, LIGHT_RATE/s;
#   moderate: RATE/s in all over STEADY_CLIENTS connections opened 1 ms apart, so each
#             connection's requests keep their own phase and arrivals spread over time (one about
#             every 1/RATE s, as from many independent users);
#   bursts:   RATE/s over CLIENTS connections opened together: h2load's clients then fire at
#             the same instant, so requests arrive CLIENTS at a time (a stress case).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-30000}
CLIENTS=${CLIENTS:-16}
RATE=${RATE:-3200}
STEADY_CLIENTS=${STEADY_CLIENTS:-20}
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
nginx_master=""
cleanup() {
  if [[ -n $nginx_master ]]; then kill -TERM "$nginx_master" 2>/dev/null || true; wait "$nginx_master" 2>/dev/null || true; fi
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
gateway_pid=$(pgrep -f "^$bin/gateway( |$)" | head -1)
delivery_pid=$(pgrep -f "^$bin/delivery-service( |$)" | head -1)
[[ -n $gateway_pid && -n $delivery_pid ]] || { echo "cannot find the gateway or Delivery process (for their CPU ticks)" >&2; exit 1; }
cpu_ticks() { local pid total=0; for pid in "$@"; do total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done; echo "$total"; }  # user + system, in 1/100 s

# The peer proxy: nginx with grpc_pass to Delivery, its workers as many as the cores (like the
# gateway's event loops), no access log, a keep-alive pool to the upstream.
nginx=$(command -v nginx || echo "$root/.build/peers/nginx/usr/sbin/nginx")
if [ ! -x "$nginx" ]; then
  mkdir -p "$root/.build/peers" && (cd "$root/.build/peers" && rm -f nginx_*.deb && apt-get download -qq nginx 2>/dev/null && dpkg-deb -x nginx_*.deb nginx) \
    || { echo "cannot fetch nginx (apt-get download nginx), the benchmark's peer proxy" >&2; exit 1; }
fi
peer=$((FABRIKAM_PORT_BASE + 29))
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy; fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  upstream delivery { server 127.0.0.1:$delivery; keepalive 512; }
  server {
    listen 127.0.0.1:$peer http2;
    keepalive_requests 10000000;
    location / { grpc_pass grpc://delivery; }
  }
}
NGINX
"$nginx" -e stderr -p "$work/nginx" -c "$work/nginx/nginx.conf" > "$work/nginx/log" 2>&1 &
nginx_master=$!
for _ in $(seq 1 50); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.1; done
sleep 0.5
nginx_pids=$(pgrep -P "$nginx_master" | tr '\n' ' ' || true)
[ -n "$nginx_pids" ] || { cat "$work/nginx/log" >&2; echo "nginx did not start" >&2; exit 1; }

# One delivery to read.
id=$(curl -s -X POST "http://127.0.0.1:$gateway/v1/deliveries" -H "Authorization: Bearer $key" \
  -d '{"pickupLocation":{"latitude":47.6101,"longitude":-122.3421},"dropoffLocation":{"latitude":47.6205,"longitude":-122.3493},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["deliveryId"])')
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$gateway/v1/deliveries/$id/status" -H "Authorization: Bearer $key" | grep -q COMPLETED && break
  sleep 0.5
done

frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
# delivery.proto imports buf/validate/validate.proto (field rules), which protovalidate ships.
.venv/bin/python tools/protovalidate_descriptor.py "$work/protovalidate.binpb"
echo "delivery_id: \"$id\"" | protoc --descriptor_set_in="$work/protovalidate.binpb" -I proto -I /usr/include --encode=fabrikam.dronedelivery.delivery.v1.GetDeliveryStatusRequest \
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
grpc_load() { # port, h2load arguments
  local port=$1; shift
  h2load "$@" -m 1 -d "$work/status.bin" -H "content-type: application/grpc" -H "te: trailers" \
    "http://127.0.0.1:$port/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus"
}
direct_load() { grpc_load "$delivery" "$@"; }
nginx_load() { grpc_load "$peer" "$@"; }
gateway_h1_load() { h2load --h1 "$@" -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status"; }
gateway_h2_load() { h2load "$@" -m 1 -H "Authorization: Bearer $key" "http://127.0.0.1:$gateway/v1/deliveries/$id/status"; }
paths="direct gateway_h1 gateway_h2 nginx"
for path in $paths; do "${path}_load" -n 2000 -c "$CLIENTS" >/dev/null; done  # warm-up
nginx_ok=$(nginx_load -n 100 -c 1 | awk '/^status codes:/ {print $3}' || true)
[ "$nginx_ok" = 100 ] || { cat "$work/nginx/log" >&2; echo "nginx did not pass the call through" >&2; exit 1; }

# Memory: RSS the gateway adds for 300 idle keep-alive connections, each answered once (so its
# handlers and buffers exist), over HTTP/1.1 and over HTTP/2; measured before the load runs.
memory=$("$root/.venv/bin/python" - "$gateway_pid" "$gateway" <<'PY'
import socket, sys, time
import h2.config, h2.connection
pid, port = int(sys.argv[1]), int(sys.argv[2])
def rss():
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) * 1024
def answered(s, data):
    s.sendall(data)
    got = b""
    while b"ok\n" not in got:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit("the gateway closed a connection during the memory test")
        got += chunk
def h1():
    s = socket.create_connection(("127.0.0.1", port))
    answered(s, b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    return s
def h2c():
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/healthz"), (":authority", "bench")], end_stream=True)
    answered(s, c.data_to_send())
    return s
results = []
for opener in (h1, h2c):
    time.sleep(0.5); before = rss()
    held = [opener() for _ in range(300)]
    time.sleep(1.0); results.append((rss() - before) / 300 / 1024)
    for s in held: s.close()
print(f"{results[0]:.1f} {results[1]:.1f} {rss() / 1048576:.1f}")
PY
)
read -r mem_h1 mem_h2 mem_rss <<< "$memory"

# Throughput: CONCURRENCY connections with one request in flight each, as fast as they go, in
# ROUNDS rounds; each round runs every concurrency on the four paths in turn, because the
# machine's speed drifts (other tenants) and interleaving exposes every path to the same drift.
# Reported per concurrency: each path's median round. A path's capacity is its best median over
# the sweep: the gateway path has more hops per request, so by Little's law it needs more
# requests in flight than the direct call to keep the cores busy, and comparing at one
# concurrency only would measure that concurrency's fit rather than either path's capacity.
ROUNDS=${ROUNDS:-5}
CONCURRENCY=${CONCURRENCY:-4 16 64 256}
per_round=$(( REQUESTS / ROUNDS ))
rm -f "$work/throughput.txt"
for round in $(seq 1 "$ROUNDS"); do
  for clients in $CONCURRENCY; do
    count=$(( per_round > 50 * clients ? per_round : 50 * clients ))
    for path in $paths; do
      # The proxy's CPU: the gateway's, or nginx's workers' on the peer path.
      proxy_pids=$gateway_pid; if [ "$path" = nginx ]; then proxy_pids=$nginx_pids; fi
      g0=$(cpu_ticks $proxy_pids); d0=$(cpu_ticks "$delivery_pid")
      out=$("${path}_load" -n "$count" -c "$clients")
      g1=$(cpu_ticks $proxy_pids); d1=$(cpu_ticks "$delivery_pid")
      echo "$clients $path $(echo "$out" | awk '/^finished in/ {print $4}') $count $((g1 - g0)) $((d1 - d0))" >> "$work/throughput.txt"
      failed=$(echo "$out" | awk '/^requests:/ {print $10}')
      if [ "$failed" != 0 ]; then echo "$path c=$clients round $round: $failed requests failed" >&2; fi
    done
  done
done
throughput_rows=$(python3 - "$work/throughput.txt" <<'PY'
import statistics, sys
from collections import defaultdict
rounds = defaultdict(list)
cpu = defaultdict(lambda: [0, 0, 0])  # requests, proxy ticks, Delivery ticks
for line in open(sys.argv[1]):
    clients, path, rps, count, proxy_ticks, delivery_ticks = line.split()
    rounds[int(clients), path].append(float(rps))
    total = cpu[int(clients), path]
    total[0] += int(count); total[1] += int(proxy_ticks); total[2] += int(delivery_ticks)
us = lambda key, which: cpu[key][which] * 10000 / cpu[key][0]  # ticks of 10 ms -> µs per request
med = {key: statistics.median(values) for key, values in rounds.items()}
levels = sorted({clients for clients, _ in rounds})
paths = ("direct", "gateway_h1", "gateway_h2", "nginx")
for c in levels:
    d = med[c, "direct"]
    rates = " | ".join(f"{med[c, p]:.0f}" for p in paths)
    ratios = " | ".join(f"{med[c, p] / d:.2f}" for p in paths[1:])
    each = " / ".join(" ".join(f"{r:.0f}" for r in rounds[c, p]) for p in paths)
    cost = " / ".join(f"{us((c, p), 1):.0f} + {us((c, p), 2):.0f}" for p in paths)
    print(f"| {c} | {rates} | {ratios} | {cost} | {each} |")
best = {p: max(levels, key=lambda c: med[c, p]) for p in paths}
d = med[best["direct"], "direct"]
print(f"| capacity (best of the sweep; at c = {', '.join(str(best[p]) for p in paths)}) | "
      + " | ".join(f"{med[best[p], p]:.0f}" for p in paths) + " | "
      + " | ".join(f"**{med[best[p], p] / d:.2f}**" for p in paths[1:]) + " | | |")
PY
)

# Fixed offered loads, RATE_SECONDS long each, in LATENCY_ROUNDS rounds (each round runs every
# load on the four paths in turn, so a path's figures and the direct call's share the machine's
# state). A third argument "spread" opens the connections 1 ms apart (h2load -r 1
# --rate-period 1ms) so their request timers keep different phases.
LATENCY_ROUNDS=${LATENCY_ROUNDS:-5}
fixed_load() { # load-name clients rate [spread] -> lines "load path rps p50 p99 failed"
  local name=$1 clients=$2 rate=$3 per_client=$(( $3 / $2 )) count=$(( $3 * RATE_SECONDS )) out path
  local spread=(); if [[ ${4:-} == spread ]]; then spread=(-r 1 --rate-period=1ms); fi
  rm -f "$work"/rate-*.log  # h2load appends to its log file
  for path in $paths; do
    out=$("${path}_load" -n "$count" -c "$clients" "${spread[@]}" --rps="$per_client" --log-file="$work/rate-$path.log")
    echo "$name $path $(summarize "$out" "$work/rate-$path.log")"
  done
}
for round in $(seq 1 "$LATENCY_ROUNDS"); do
  fixed_load light 1 "$LIGHT_RATE"
  fixed_load moderate "$STEADY_CLIENTS" "$RATE" spread
  fixed_load bursts "$CLIENTS" "$RATE"
done > "$work/latency.txt"
# Per load and path: the median round's p50 and p99, and the median over rounds of what the
# gateway added to the direct call in the same round.
latency_rows=$(python3 - "$work/latency.txt" "$LIGHT_RATE" "$RATE" "$STEADY_CLIENTS" "$CLIENTS" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    load, path, rps, p50, p99, failed = line.split()
    runs[load, path].append((float(rps), float(p50), float(p99), int(failed)))
light, rate, steady, clients = sys.argv[2:]
titles = {"light": f"light: 1 connection, {light}/s",
          "moderate": f"moderate: {rate}/s spread over time ({steady} connections)",
          "bursts": f"bursts: {rate}/s arriving {clients} at a time"}
names = {"direct": "direct gRPC", "gateway_h1": "gateway HTTP/1.1", "gateway_h2": "gateway HTTP/2", "nginx": "peer: nginx grpc_pass"}
med = lambda xs: statistics.median(xs)
for load in ("light", "moderate", "bursts"):
    direct = runs[load, "direct"]
    for path in names:
        r = runs[load, path]
        first = titles[load] if path == "direct" else ""
        added = "| | |" if path == "direct" else \
            f"| {med([a[1] - d[1] for a, d in zip(r, direct)]):+.2f} ms | {med([a[2] - d[2] for a, d in zip(r, direct)]):+.2f} ms |"
        print(f"| {first} | {names[path]} | {med([x[0] for x in r]):.0f} | {med([x[1] for x in r]):.2f} | "
              f"{med([x[2] for x in r]):.2f} {added} {sum(x[3] for x in r)} | {' '.join(f'{x[2]:.2f}' for x in r)} |")
PY
)

cat <<TABLE
Throughput: $ROUNDS interleaved rounds of h2load -n max($per_round, 50 x connections) per path and concurrency (one request in flight per connection, as fast as it goes), whole system on this machine ($(nproc) cores), release build; medians of the rounds

| connections | direct gRPC: Delivery.GetDeliveryStatus (HTTP/2) | gateway: GET /v1/deliveries/{id}/status, HTTP/1.1 JSON (API key, tenancy check) | gateway: the same over HTTP/2 (h2c) | peer: nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///') grpc_pass, gRPC in and out (a proxy hop only) | HTTP/1.1 / direct | HTTP/2 / direct | nginx / direct | CPU µs per request, proxy + Delivery (direct / HTTP/1.1 / HTTP/2 / nginx) | each round (direct / HTTP/1.1 / HTTP/2 / nginx) |
|---:|---:|---:|---:|---:|---:|---:|---:|---|---|
$throughput_rows

Gateway memory: $mem_h1 KiB per idle HTTP/1.1 connection, $mem_h2 KiB per idle HTTP/2 connection (300 of each, answered once); RSS $mem_rss MiB after them

Latency added at fixed loads: $LATENCY_ROUNDS rounds of ${RATE_SECONDS} s per load and path (h2load --rps); medians over the rounds, "added" paired with the direct call of the same round

| load | path | requests/s | p50 ms | p99 ms | added p50 | added p99 | failed | p99 of each round |
|---|---|---:|---:|---:|---:|---:|---:|---|
$latency_rows
TABLE
