#!/usr/bin/env bash
# `make run`: starts the whole system locally.
#
# Today the repository holds the foundation only (the protobuf toolchain and the contracts); the
# services, their launcher and the gateway are issues #4 and #5. Until they land this says so
# plainly and exits, rather than pretending to start something.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cat <<MSG
Fabrikam Drone Delivery: nothing to start yet.

Built and tested so far (make test):
  - protoc-gen-swiftpbc   the code generator (.build/debug/protoc-gen-swiftpbc)
  - ProtobufKit           protobuf runtime over protobuf-c, canonical proto3 JSON
  - DroneDeliveryAPI      the services' contracts, generated from proto/
  - GRPCProtos            health, reflection, interop test service, google.rpc

The services (make run starting every process on 127.0.0.1) arrive with issue #4,
the JSON gateway on 127.0.0.1:8080 with issue #5. See README.md, "Status".
MSG
