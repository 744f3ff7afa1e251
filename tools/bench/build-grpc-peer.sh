#!/usr/bin/env bash
# tools/bench/build-grpc-peer.sh DIR: the grpc C++ peer of the RPC benchmarks (bench-rpc.sh,
# bench-tls.sh): installs what it needs from Debian when missing (libgrpc++, its protoc plugin,
# and h2load, the load generator both benchmarks use), then compiles
# tools/bench/grpc_cpp_server.cc with the TestService protos into DIR/grpc_cpp_server, and
# tools/bench/grpc_cpp_client.cc (the client side of bench-tls) into DIR/grpc_cpp_client.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$1
need=()
for package in libgrpc++-dev protobuf-compiler-grpc nghttp2-client; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "building the grpc C++ peer" >&2
protoc -I "$root/proto" --cpp_out="$work" --grpc_out="$work" --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin \
  grpc/testing/test.proto grpc/testing/messages.proto grpc/testing/empty.proto
# The generated code once, for both programs.
objects=()
for source in "$work"/grpc/testing/*.cc; do
  g++ -O2 -std=c++17 -I"$work" $(pkg-config --cflags grpc++ protobuf) -c "$source" -o "${source%.cc}.o"
  objects+=("${source%.cc}.o")
done
for program in grpc_cpp_server grpc_cpp_client; do
  g++ -O2 -std=c++17 -I"$work" "$root/tools/bench/$program.cc" "${objects[@]}" -o "$work/$program" \
    $(pkg-config --cflags --libs grpc++ protobuf)
done
