#!/usr/bin/env bash
# `make interop`: our runtime against the reference implementation of gRPC (grpcio), both ways.
#   1. grpcio's client runs every interop case against our interop server;
#   2. buf curl calls our server through reflection alone (no .proto files), and grpcio's
#      reflection client asks it about extensions;
#   3. our interop client runs the cases against grpcio's TestService server (and against ours,
#      where it can see what grpcio's client cannot: each response's compressed flag; a raw
#      HTTP/2 client reads that flag from the frames too).
# Servers bind 127.0.0.1 on a free port and are stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python="$root/.venv/bin/python"

swift build --product interop-server >/dev/null
swift build --product interop-client >/dev/null
bin=$(swift build --show-bin-path)
logs=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$logs"; }
trap cleanup EXIT

# Starts a server command in the background and prints "pid port". Callers record the pid
# themselves: this runs in a command substitution's subshell, whose `pids` the trap never sees.
start_server() {
  local log=$1; shift
  "$@" > "$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if grep -q "listening 127.0.0.1:" "$log"; then
      echo "$pid $(grep -o "listening 127.0.0.1:[0-9]*" "$log" | head -1 | cut -d: -f2)"
      return
    fi
    sleep 0.1
  done
  echo "server did not start: $*" >&2
  cat "$log" >&2
  exit 1
}

passed=0
failed=0
tally() { # reads a runner's summary line
  local line
  line=$(grep -E "^[0-9]+ passed, [0-9]+ failed$" "$1" | tail -1)
  passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
}

stubs="$logs/stubs"
PYTHON="$python" bash tools/interop/generate.sh "$stubs" >/dev/null

echo "== grpcio client -> our server"
read -r pid port < <(start_server "$logs/our-server.log" "$bin/interop-server" --port 0)
pids+=("$pid")
[[ -n $port ]] || exit 1
"$python" tools/interop/grpcio_client.py --host 127.0.0.1 --port "$port" --test_case all --stubs "$stubs" | tee "$logs/a.out" || true
tally "$logs/a.out"

echo "== our client -> our server (every case; server_compressed_* check each response's compressed flag)"
"$bin/interop-client" --host 127.0.0.1 --port "$port" --test_case all | tee "$logs/o.out" || true
tally "$logs/o.out"

echo "== raw HTTP/2 client (Python h2) -> our server: the compressed flag of each response message"
"$python" tools/interop/h2_compression_check.py --port "$port" --stubs "$stubs" | tee "$logs/c.out" || true
tally "$logs/c.out"

echo "== buf curl -> our server, through reflection only (no .proto files)"
buf="$root/.venv/bin/buf"
check() { # name, command...
  local name=$1; shift
  if out=$("$@" 2>&1); then echo "ok $name"; passed=$((passed + 1)); else echo "FAIL $name: $out"; failed=$((failed + 1)); fi
}
url="http://127.0.0.1:$port"
methods=$("$buf" curl --protocol grpc --http2-prior-knowledge --list-methods "$url" 2>&1 || true)
for method in grpc.testing.TestService/UnaryCall grpc.testing.TestService/FullDuplexCall grpc.health.v1.Health/Watch \
              grpc.reflection.v1.ServerReflection/ServerReflectionInfo grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo; do
  check "buf_list_$method" grep -qx "$method" <<< "$methods"
done
check buf_unary_call bash -c "'$buf' curl --protocol grpc --http2-prior-knowledge -d '{\"responseSize\": 3}' '$url/grpc.testing.TestService/UnaryCall' | grep -q AAAA"
check buf_health_check bash -c "'$buf' curl --protocol grpc --http2-prior-knowledge -d '{\"service\": \"grpc.testing.TestService\"}' '$url/grpc.health.v1.Health/Check' | grep -q SERVING"
check buf_server_streaming bash -c "'$buf' curl --protocol grpc --http2-prior-knowledge -d '{\"responseParameters\": [{\"size\": 1}, {\"size\": 2}]}' '$url/grpc.testing.TestService/StreamingOutputCall' | grep -c payload | grep -qx 2"

echo "== grpcio's reflection client -> our server: extension queries (google.api.http)"
"$python" tools/interop/grpcio_reflection_check.py --host 127.0.0.1 --port "$port" | tee "$logs/r.out" || true
tally "$logs/r.out"

echo "== our client -> grpcio server"
# client_compressed_unary and client_compressed_streaming need a server that can see whether a
# request was compressed; grpcio's server API cannot, so those two run only against our server
# (in the step above, driven by grpcio's client).
read -r pid port < <(start_server "$logs/grpcio-server.log" "$python" tools/interop/grpcio_server.py --port 0 --stubs "$stubs")
pids+=("$pid")
[[ -n $port ]] || exit 1
cases=empty_unary,large_unary,client_streaming,server_streaming,ping_pong,empty_stream,custom_metadata,status_code_and_message,special_status_message,unimplemented_method,unimplemented_service,cancel_after_begin,cancel_after_first_response,timeout_on_sleeping_server,server_compressed_unary,server_compressed_streaming
"$bin/interop-client" --host 127.0.0.1 --port "$port" --test_case "$cases" | tee "$logs/b.out" || true
tally "$logs/b.out"

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
