#!/usr/bin/env bash
# Generates the Python protobuf + gRPC stubs for the gRPC interop protos
# (proto/grpc/testing/{empty,messages,test}.proto) into the directory given as
# $1. Nothing generated is committed: generate into a scratch directory and
# hand it to the interop scripts with `--stubs DIR` (without --stubs they run
# this script themselves into a temporary directory).
#
# Usage: tools/interop/generate.sh OUT_DIR
# Env:   PYTHON  interpreter that has grpcio-tools installed (default python3)
#
# The output is laid out by proto path (OUT_DIR/grpc/testing/*_pb2*.py) and
# imports itself as `grpc.testing.*`. `grpc` is also grpcio's package, so
# loaders must graft OUT_DIR/grpc onto grpc.__path__ (interop_stubs.py does).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="$1"
python="${PYTHON:-python3}"

mkdir -p "$out"
"$python" -m grpc_tools.protoc \
    -I "$proto_root" \
    --python_out="$out" \
    --grpc_python_out="$out" \
    "$proto_root/grpc/testing/empty.proto" \
    "$proto_root/grpc/testing/messages.proto" \
    "$proto_root/grpc/testing/test.proto"
