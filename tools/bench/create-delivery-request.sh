#!/usr/bin/env bash
# tools/bench/create-delivery-request.sh OUT: one gRPC-framed CreateDeliveryRequest (Ingestion),
# the request body bench-ingestion.sh and bench-scaled.sh send with h2load. Encoded by protoc
# from proto/; ingestion.proto imports buf/validate/validate.proto (field rules), whose
# descriptor protovalidate's PyPI package ships (tools/protovalidate_descriptor.py, .venv).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$root/.venv/bin/python" "$root/tools/protovalidate_descriptor.py" "$scratch/protovalidate.binpb"
cat <<'TEXT' | protoc --descriptor_set_in="$scratch/protovalidate.binpb" -I "$root/proto" -I /usr/include \
    --encode=fabrikam.dronedelivery.ingestion.v1.CreateDeliveryRequest fabrikam/dronedelivery/ingestion/v1/ingestion.proto > "$scratch/create.pb"
owner { account_id: "acct-demo" user_id: "bench" }
pickup_location { latitude: 47.6101 longitude: -122.3421 }
dropoff_location { latitude: 47.6205 longitude: -122.3493 }
package_info { size: PACKAGE_SIZE_SMALL weight: 1.5 }
TEXT
# The gRPC frame: uncompressed flag, 4-byte big-endian length, the message.
python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(b"\0"+len(d).to_bytes(4,"big")+d)' "$scratch/create.pb" > "$out"
