#!/usr/bin/env bash
# Generates the Python protobuf + gRPC stubs for the gRPC interop protos
# (proto/grpc/testing/{empty,messages,test}.proto) into the directory given
# as $1. Nothing generated is committed: callers generate into a scratch
# directory and put it on PYTHONPATH (the interop scripts do this via
# --stubs DIR, or generate into a temp dir themselves).
#
# Usage: tools/interop/generate.sh OUT_DIR
# Env:   PYTHON  interpreter that has grpcio-tools installed (default python3)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
out="$1"
python="${PYTHON:-python3}"

mkdir -p "$out"
# Imports in the generated code follow the proto paths
# (`from grpc.testing import messages_pb2`), and the top-level name `grpc`
# would shadow the grpcio package. So protoc runs with the include root at
# proto/, but the package directory is renamed afterwards: see below.
"$python" -m grpc_tools.protoc \
    -I "$proto_root" \
    --python_out="$out" \
    --grpc_python_out="$out" \
    "$proto_root/grpc/testing/empty.proto" \
    "$proto_root/grpc/testing/messages.proto" \
    "$proto_root/grpc/testing/test.proto"
