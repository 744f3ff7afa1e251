#!/usr/bin/env bash
# `make bench-tls`: what TLS costs per unary call on our RPC server, against cleartext and
# against grpc C++ (Debian's libgrpc++, tools/bench/grpc_cpp_server.cc) with and without TLS, in
# the same run: each server pinned to core 0 in turn, h2load pinned to core 1, UnaryCall with a
# small payload over CLIENTS long-lived connections (h2load speaks TLS with ALPN h2 for https://
# URLs). Server CPU microseconds per call from /proc; the servers take turns for ROUNDS rounds and
# each figure is the median round. Also: the CPU of a new connection with one call (a full TLS
# handshake each). Bounded: a fixed number of requests per run.
#
# The client side, in the same rounds: our RPCClient (tools/bench-client) and grpc C++'s client
# (tools/bench/grpc_cpp_client.cc) each make CLIENT_CALLS UnaryCalls over CLIENTS connections with
# STREAMS calls in flight on each, against the same server (grpc C++, pinned to core 1; the client
# on core 0), in cleartext and over TLS with the server's certificate checked against the local CA
# and the name "localhost". Client CPU microseconds per call (the client's own getrusage around
# the calls, after a warm-up), and per new connection with one call (CLIENT_HANDSHAKES of them,
# one after another).
#
# Not a test (no timing assertions anywhere): a measurement to run by hand, on a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-16}
ROUNDS=${ROUNDS:-3}
HANDSHAKES=${HANDSHAKES:-2000}
CLIENT_CALLS=${CLIENT_CALLS:-100000}
CLIENT_HANDSHAKES=${CLIENT_HANDSHAKES:-1000}

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

bash tools/make-certs.sh "$work/certs" >/dev/null
swift build -c release --product interop-server >/dev/null
swift build -c release --product bench-client >/dev/null
server="$(swift build -c release --show-bin-path)/interop-server"
our_client="$(swift build -c release --show-bin-path)/bench-client"
# The peer (grpc C++) and the load generator come from Debian; nothing else needs them.
bash tools/bench/build-grpc-peer.sh "$work"

frame() { python3 -c 'import sys; d=sys.stdin.buffer.read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)'; }
echo 'response_size: 16 payload { body: "0123456789abcdef" }' \
  | protoc -I proto --encode=grpc.testing.SimpleRequest grpc/testing/messages.proto | frame > "$work/unary.bin"

# Prints pid:port. It runs in a command substitution's subshell, whose `pids` the exit trap never
# sees: the caller records the pid (a server left running holds the lock fd `flock` gave us).
start_server() { # log, env...
  local log=$1; shift
  env "$@" taskset -c 0 "$server" --port 0 > "$log" 2>&1 &
  wait_listening "$log" $!
}

start_peer() { # log, [cert key]
  local log=$1; shift
  taskset -c "${PEER_CORE:-0}" "$work/grpc_cpp_server" 0 "$@" > "$log" 2>&1 &
  wait_listening "$log" $!
}

wait_listening() { # log pid
  local log=$1
  local pid=$2
  for _ in $(seq 1 100); do
    if grep -q "listening 127.0.0.1:" "$log"; then
      echo "$pid:$(grep -o 'listening 127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2)"
      return
    fi
    sleep 0.1
  done
  echo "server did not start" >&2; cat "$log" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# h2load against one server; prints "rps cpu_us_per_call".
load() { # pid url connections streams requests
  local pid=$1 url=$2 connections=$3 streams=$4 requests=$5
  local args=(-c "$connections" -m "$streams" -d "$work/unary.bin" -H "content-type: application/grpc" -H "te: trailers")
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 h2load "${args[@]}" -n "$requests" "$url")
  after=$(cpu_ticks "$pid")
  local rps succeeded
  rps=$(grep -o 'finished in [0-9.]*[a-z]*, [0-9.]* req/s' <<< "$out" | awk '{print $4}')
  succeeded=$(grep -o '[0-9]* succeeded' <<< "$out" | awk '{print $1}')
  [[ "$succeeded" -gt 0 ]] || { echo "no request succeeded against $url:" >&2; echo "$out" >&2; exit 1; }
  python3 -c "print(f'{float($rps):.0f} {($after - $before) / $(getconf CLK_TCK) * 1e6 / $succeeded:.1f}')"
}

# New connections, one call each: HANDSHAKES connections in batches of 100 (h2load: 100 clients, one
# request each); prints "connections/s cpu_us_per_connection".
connects() { # pid url
  local pid=$1 url=$2 before after start end batches=$(( HANDSHAKES / 100 ))
  local args=(-c 100 -m 1 -n 100 -d "$work/unary.bin" -H "content-type: application/grpc" -H "te: trailers")
  before=$(cpu_ticks "$pid"); start=$(date +%s.%N)
  for _ in $(seq 1 "$batches"); do
    taskset -c 1 h2load "${args[@]}" "$url" | grep -q "100 succeeded" || { echo "a batch of connections failed against $url" >&2; exit 1; }
  done
  end=$(date +%s.%N); after=$(cpu_ticks "$pid")
  python3 -c "print(f'{$batches * 100 / ($end - $start):.0f} {($after - $before) / $(getconf CLK_TCK) * 1e6 / ($batches * 100):.1f}')"
}

IFS=: read -r plain_pid plain_port < <(start_server "$work/plain.log")
pids+=("$plain_pid")
IFS=: read -r tls_pid tls_port < <(start_server "$work/tls.log" FABRIKAM_TLS_CERT="$work/certs/server.pem" FABRIKAM_TLS_KEY="$work/certs/server-key.pem")
pids+=("$tls_pid")
IFS=: read -r cpp_plain_pid cpp_plain_port < <(start_peer "$work/cpp-plain.log")
pids+=("$cpp_plain_pid")
IFS=: read -r cpp_tls_pid cpp_tls_port < <(start_peer "$work/cpp-tls.log" "$work/certs/server.pem" "$work/certs/server-key.pem")
pids+=("$cpp_tls_pid")
# The server of the client side: grpc C++ on core 1, the clients on core 0.
IFS=: read -r peer_plain_pid peer_plain_port < <(PEER_CORE=1 start_peer "$work/peer-plain.log")
pids+=("$peer_plain_pid")
IFS=: read -r peer_tls_pid peer_tls_port < <(PEER_CORE=1 start_peer "$work/peer-tls.log" "$work/certs/server.pem" "$work/certs/server-key.pem")
pids+=("$peer_tls_pid")

# One client run; prints "client-WHO-TRANSPORT rps cpu_us_per_call" and "...-connect cps cpu_us".
client_run() { # who transport warmup handshakes
  local who=$1 transport=$2 warmup=$3 handshakes=$4 port=$peer_plain_port tls=() out
  [[ $transport == tls ]] && port=$peer_tls_port
  if [[ $who == ours ]]; then
    [[ $transport == tls ]] && tls=(--ca "$work/certs/ca.pem" --server-name localhost)
    out=$(taskset -c 0 "$our_client" --port "$port" --connections "$CLIENTS" --concurrency "$STREAMS" --calls "$CLIENT_CALLS" \
      --warmup "$warmup" --handshakes "$handshakes" "${tls[@]}") || { echo "our client failed ($transport): $out" >&2; exit 1; }
  else
    [[ $transport == tls ]] && tls=("$work/certs/ca.pem" localhost)
    out=$(taskset -c 0 "$work/grpc_cpp_client" "$port" "$CLIENTS" "$STREAMS" "$CLIENT_CALLS" "$warmup" "$handshakes" "${tls[@]}") \
      || { echo "the grpc C++ client failed ($transport): $out" >&2; exit 1; }
  fi
  awk -v kind="client-$who-$transport" '$1 == "calls" { print kind, $2, $3 } $1 == "connect" { print kind "-connect", $2, $3 }' <<< "$out"
}

path=/grpc.testing.TestService/UnaryCall
servers=("cleartext:$plain_pid:http://127.0.0.1:$plain_port$path" "tls:$tls_pid:https://127.0.0.1:$tls_port$path"
         "cpp-cleartext:$cpp_plain_pid:http://127.0.0.1:$cpp_plain_port$path" "cpp-tls:$cpp_tls_pid:https://127.0.0.1:$cpp_tls_port$path")
# Warm-up (and a check that each answers).
for server in "${servers[@]}"; do
  IFS=: read -r _ pid url <<< "$server"
  load "$pid" "$url" "$CLIENTS" "$STREAMS" 20000 >/dev/null
done

results="$work/results"
for round in $(seq 1 "$ROUNDS"); do
  for server in "${servers[@]}"; do
    IFS=: read -r kind pid url <<< "$server"
    echo "$kind $(load "$pid" "$url" "$CLIENTS" "$STREAMS" "$REQUESTS")" >> "$results"
    # A new connection per call: the handshake's cost.
    echo "$kind-connect $(connects "$pid" "$url")" >> "$results"
  done
  # The client side: each client, cleartext and TLS, against the grpc C++ server on core 1.
  for who in ours cpp; do
    for transport in cleartext tls; do
      client_run "$who" "$transport" 20000 "$CLIENT_HANDSHAKES" >> "$results"
    done
  done
  echo "round $round done" >&2
done

python3 - "$results" "$REQUESTS" "$CLIENTS" "$STREAMS" "$HANDSHAKES" "$CLIENT_CALLS" "$CLIENT_HANDSHAKES" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kind, rps, cpu = line.split()
    rows.setdefault(kind, []).append((float(rps), float(cpu)))
median = lambda kind, i: statistics.median(r[i] for r in rows[kind])
print(f"UnaryCall, {sys.argv[2]} calls over {sys.argv[3]} connections x {sys.argv[4]} streams; server CPU per call (median of rounds); "
      f"a new connection per call: {sys.argv[5]} connections, server CPU per connection\n")
print("| server | transport | calls/s | server CPU µs/call | vs its cleartext | new connection + call, server CPU µs |")
print("|---|---|---:|---:|---:|---:|")
for server, prefix in [("ours", ""), ("grpc C++", "cpp-")]:
    for kind in ["cleartext", "tls"]:
        row = prefix + kind
        print(f"| {server} | {kind} | {median(row, 0):.0f} | {median(row, 1):.1f} | {median(row, 1) / median(prefix + 'cleartext', 1):.2f}x | {median(row + '-connect', 1):.0f} |")
ours = median("tls", 1) / median("cpp-tls", 1)
handshake = (median("tls-connect", 1) - median("cleartext-connect", 1), median("cpp-tls-connect", 1) - median("cpp-cleartext-connect", 1))
print(f"\nOver TLS our server spends {ours:.2f}x grpc C++'s CPU per call; a TLS handshake (P-256 certificate) costs "
      f"our server about {handshake[0]:.0f} µs and grpc C++ about {handshake[1]:.0f} µs.")

print(f"\nClient side: UnaryCall, {sys.argv[6]} calls over {sys.argv[3]} connections x {sys.argv[4]} calls in flight, against the grpc C++ "
      f"server (core 1; client on core 0); client CPU per call (median of rounds); a new connection per call: {sys.argv[7]} "
      f"connections one after another, client CPU per connection\n")
print("| client | transport | calls/s | client CPU µs/call | vs its cleartext | new connection + call, client CPU µs |")
print("|---|---|---:|---:|---:|---:|")
for client, who in [("ours", "ours"), ("grpc C++", "cpp")]:
    for kind in ["cleartext", "tls"]:
        row = f"client-{who}-{kind}"
        print(f"| {client} | {kind} | {median(row, 0):.0f} | {median(row, 1):.1f} | {median(row, 1) / median(f'client-{who}-cleartext', 1):.2f}x "
              f"| {median(row + '-connect', 1):.0f} |")
added = {who: median(f"client-{who}-tls", 1) - median(f"client-{who}-cleartext", 1) for who in ["ours", "cpp"]}
ratio = {who: median(f"client-{who}-tls", 1) / median(f"client-{who}-cleartext", 1) for who in ["ours", "cpp"]}
handshake = {who: median(f"client-{who}-tls-connect", 1) - median(f"client-{who}-cleartext-connect", 1) for who in ["ours", "cpp"]}
print(f"\nOver TLS our client spends {median('client-ours-tls', 1) / median('client-cpp-tls', 1):.2f}x grpc C++'s client CPU per call; "
      f"TLS adds {added['ours']:.1f} µs per call to ours ({(ratio['ours'] - 1) * 100:.0f}%) and {added['cpp']:.1f} µs to grpc C++'s "
      f"({(ratio['cpp'] - 1) * 100:.0f}%); a client TLS handshake costs ours about {handshake['ours']:.0f} µs and grpc C++'s about {handshake['cpp']:.0f} µs.")
PY
