#!/usr/bin/env bash
# Regenerates every piece of code that comes from .proto files (`make proto`):
#   protoc-c    -> C structs and descriptors   (Sources/C*/, Tests/Fixtures/CTestMessages/)
#   swiftpbc    -> Swift types over those       (Sources/*/Generated/, Tests/Fixtures/TestMessages/Generated/)
# The output is committed; CI runs this script and fails if `git diff` shows a change.
#
# Groups (one C target and one Swift module each):
#   well-known  google/protobuf/* (from the system's libprotobuf-dev), google/api/*,
#               google/rpc/* (Status and the error details, which RPCError carries)    -> ProtobufKit
#   grpc        grpc/*                                                                 -> GRPCProtos
#   api         fabrikam/dronedelivery/*                                               -> DroneDeliveryAPI
#   testing     fabrikam/testing/*                                                     -> TestMessages (tests only)
# Field rules: proto/fabrikam/dronedelivery imports buf/validate/validate.proto (protovalidate's
# annotations). It is not kept here: tools/protovalidate_descriptor.py writes it out of PyPI's
# protovalidate package (pinned in tools/requirements.txt, installed by make deps) as a descriptor
# set, which every protoc call reads with --descriptor_set_in. protoc-c's output names a header for
# every import; the one for validate.proto is dropped (no C type of it is used: the options stay
# in the descriptors only).
# and the command-line client's commands (`CLI`: one command per service, one subcommand per RPC)
#   dronectl    fabrikam/dronedelivery/*, grpc/health/v1, grpc/reflection/v1          -> DroneCTLCommands
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
system_include=${PROTOC_SYSTEM_INCLUDE:-/usr/include}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python=${PYTHON:-$root/.venv/bin/python}
validate_set="$scratch/protovalidate.binpb"
"$python" tools/protovalidate_descriptor.py "$validate_set"

wkt_protos="google/protobuf/any.proto google/protobuf/duration.proto google/protobuf/empty.proto
  google/protobuf/field_mask.proto google/protobuf/struct.proto google/protobuf/timestamp.proto
  google/protobuf/wrappers.proto"
descriptor_protos="google/protobuf/descriptor.proto google/protobuf/compiler/plugin.proto"
list() { (cd proto && find "$@" -name '*.proto' | sort); }
api_annotations=$(list google/api)
google_rpc=$(list google/rpc)
grpc_protos=$(list grpc)
domain_protos=$(list fabrikam/dronedelivery)
testing_protos=$(list fabrikam/testing)

# protoc-c output for one group into a C target: sources beside, headers under include/.
generate_c() {
  local target="$root/$1"; shift
  local out="$scratch/c-$(basename "$target")"
  mkdir -p "$out"
  protoc --descriptor_set_in="$validate_set" -I proto -I "$system_include" --c_out="$out" "$@"
  find "$out" -name '*.pb-c.h' -exec sed -i '/^#include "buf\/validate\/validate.pb-c.h"$/d' {} +
  rm -rf "$target"
  mkdir -p "$target/include"
  (cd "$out" && find . -name '*.pb-c.h' | while read -r header; do
     mkdir -p "$target/include/$(dirname "$header")"; cp "$header" "$target/include/$header"; done)
  (cd "$out" && find . -name '*.pb-c.c' | while read -r source; do
     mkdir -p "$target/$(dirname "$source")"; cp "$source" "$target/$source"; done)
}

echo "protoc-c: C structs"
# shellcheck disable=SC2086
generate_c Sources/CWellKnownProtos $wkt_protos $descriptor_protos $api_annotations $google_rpc
# shellcheck disable=SC2086
generate_c Sources/CGRPCProtos $grpc_protos
# shellcheck disable=SC2086
generate_c Sources/CDroneDeliveryAPI $domain_protos
# shellcheck disable=SC2086
generate_c Tests/Fixtures/CTestMessages $testing_protos

echo "building protoc-gen-swiftpbc"
swift build --product protoc-gen-swiftpbc -c release 2>&1 | grep -E "error|warning: " || true
set -o pipefail; swift build --product protoc-gen-swiftpbc -c release >/dev/null
plugin="$(swift build --product protoc-gen-swiftpbc -c release --show-bin-path)/protoc-gen-swiftpbc"

# Swift for one group into a module's Generated/ folder.
generate_swift() {
  local target=$1 options=$2; shift 2
  local out="$scratch/swift-$(basename "$(dirname "$target")")-$(basename "$target")"
  mkdir -p "$out"
  protoc --descriptor_set_in="$validate_set" -I proto -I "$system_include" --plugin=protoc-gen-swiftpbc="$plugin" \
    --swiftpbc_opt="$options" --swiftpbc_out="$out" "$@"
  rm -rf "$target"
  mkdir -p "$target"
  cp -R "$out"/. "$target"/
}

echo "protoc-gen-swiftpbc: Swift types"
# shellcheck disable=SC2086
# google/api and descriptor.proto get metadata only (their descriptors, for reflection clients).
generate_swift Sources/ProtobufKit/Generated "Module=ProtobufKit,CModule=CWellKnownProtos,MetadataOnly=google/api/,MetadataOnly=google/protobuf/descriptor.proto" \
  $wkt_protos google/protobuf/descriptor.proto $api_annotations $google_rpc
# shellcheck disable=SC2086
generate_swift Sources/GRPCProtos/Generated "Module=GRPCProtos,CModule=CGRPCProtos" $grpc_protos
# shellcheck disable=SC2086
generate_swift Sources/DroneDeliveryAPI/Generated "Module=DroneDeliveryAPI,CModule=CDroneDeliveryAPI,Map=google/api/:ProtobufKit:CWellKnownProtos,Map=google/rpc/:ProtobufKit:CWellKnownProtos" $domain_protos
# shellcheck disable=SC2086
generate_swift Tests/Fixtures/TestMessages/Generated "Module=TestMessages,CModule=CTestMessages" $testing_protos
echo "protoc-gen-swiftpbc: dronectl commands"
# shellcheck disable=SC2086
generate_swift Sources/DroneCTLCommands/Generated "CLI,Map=fabrikam/:DroneDeliveryAPI:CDroneDeliveryAPI,Map=grpc/:GRPCProtos:CGRPCProtos,Map=google/rpc/:ProtobufKit:CWellKnownProtos" \
  $domain_protos grpc/health/v1/health.proto grpc/reflection/v1/reflection.proto
echo "done"
