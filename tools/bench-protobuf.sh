#!/usr/bin/env bash
# `make bench-protobuf`: ProtobufKit against swift-protobuf 1.39 (and the JSON parsers against each
# other) with ordo-one/benchmark, in the separate Benchmarks/ package. Prints the text report;
# `python3 tools/bench-summary.py < report` turns it into the tables of docs/benchmarks.md.
#
#   tools/bench-protobuf.sh               run the benchmarks
#   tools/bench-protobuf.sh --regenerate  rebuild swift-protobuf's protoc-gen-swift (slow, minutes)
#                                         and regenerate Benchmarks/Sources/SwiftProtobufMessages
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/Benchmarks"

if [ "${1:-}" = "--regenerate" ]; then
  swift package resolve
  checkout="$root/Benchmarks/.build/checkouts/swift-protobuf"
  swift build --package-path "$checkout" --scratch-path "$root/Benchmarks/.build-protoc-gen-swift" --product protoc-gen-swift
  plugin="$root/Benchmarks/.build-protoc-gen-swift/debug/protoc-gen-swift"
  out="$root/Benchmarks/Sources/SwiftProtobufMessages"
  rm -f "$out"/*.pb.swift
  (cd "$root/proto" && protoc -I . -I /usr/include --plugin=protoc-gen-swift="$plugin" \
     --swift_opt=Visibility=Public,FileNaming=PathToUnderscores --swift_out="$out" \
     google/api/http.proto google/api/annotations.proto \
     fabrikam/dronedelivery/common/v1/common.proto fabrikam/dronedelivery/telemetry/v1/telemetry.proto \
     fabrikam/dronedelivery/ingestion/v1/ingestion.proto fabrikam/dronedelivery/delivery/v1/delivery.proto \
     fabrikam/dronedelivery/deliveryhistory/v1/deliveryhistory.proto)
  echo "regenerated $(ls "$out" | wc -l) files in $out"
  exit 0
fi

swift package benchmark --target ProtobufBenchmarks --no-progress --grouping metric "$@"
