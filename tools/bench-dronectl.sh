#!/usr/bin/env bash
# `make bench-dronectl`: the whole-process cost of one dronectl call against `buf curl` (PyPI
# buf-bin, in .venv) in the same run, and the memory of a 100,000-message server stream.
#   ROUNDS=30 (default): unary calls per command, the commands taking turns.
# Peers: our interop server (release build) for the unary call; grpcio's TestService with
# reflection (tools/dronectl/grpcio_reflection_server.py) for the stream. dronectl is the
# release build `make install` makes (static Swift runtime).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${ROUNDS:-30}

swift build -c release --static-swift-stdlib --product dronectl >/dev/null
swift build -c release --product interop-server >/dev/null
dronectl="$(swift build -c release --static-swift-stdlib --show-bin-path)/dronectl"
server="$(swift build -c release --show-bin-path)/interop-server"

scratch=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

# Our interop server on a free port (port 0 is printed back).
"$server" --port 0 > "$scratch/interop.log" 2>&1 &
pids+=($!)
PYTHON=.venv/bin/python bash tools/interop/generate.sh "$scratch/stubs" >/dev/null
.venv/bin/python tools/dronectl/grpcio_reflection_server.py --port 0 --stubs "$scratch/stubs" > "$scratch/grpcio.log" 2>&1 &
pids+=($!)
port_of() {
    for _ in $(seq 1 200); do
        port=$(grep -oE '127\.0\.0\.1:[0-9]+' "$1" | head -1 | cut -d: -f2 || true)
        if [[ -n $port ]]; then echo "$port"; return; fi
        sleep 0.05
    done
    echo "no listening line in $1:" >&2; cat "$1" >&2; exit 1
}
unary_port=$(port_of "$scratch/interop.log")
stream_port=$(port_of "$scratch/grpcio.log")

echo "dronectl: $dronectl ($(stat -c %s "$dronectl") bytes); buf: $(.venv/bin/buf --version); $(nproc) cores"
.venv/bin/python tools/dronectl/bench_dronectl.py --dronectl "$dronectl" --buf .venv/bin/buf \
    --unary-port "$unary_port" --stream-port "$stream_port" --rounds "$rounds"
