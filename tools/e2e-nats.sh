#!/usr/bin/env bash
# tools/e2e-nats.sh: one delivery end to end with the messaging on NATS JetStream.
#
# Under tools/with-nats.sh (a nats-server of its own), starts the whole system (tools/run.sh
# --no-build, debug binaries: `swift build` first) with FABRIKAM_BROKER naming that server, in a
# temporary data directory and on ports from FABRIKAM_PORT_BASE (default 25051, so it runs beside
# `make run`); creates a delivery through the gateway with the demo key and waits (bounded) until
# it is COMPLETED and its history is there; checks that no SQLite broker file was created. Stops
# everything it started, also on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${FABRIKAM_TEST_NATS_URL:-} ]]; then exec bash "$root/tools/with-nats.sh" bash "$0" "$@"; fi

export FABRIKAM_BROKER=$FABRIKAM_TEST_NATS_URL
# The server requires credentials: the services read the password from its file, as from a Secret.
export FABRIKAM_BROKER_USER=$FABRIKAM_TEST_NATS_USER FABRIKAM_BROKER_PASSWORD_FILE=$FABRIKAM_TEST_NATS_PASSWORD_FILE
export FABRIKAM_PORT_BASE=${FABRIKAM_PORT_BASE:-25051}
export FABRIKAM_DATA_DIR=$(mktemp -d /tmp/fabrikam-e2e-nats.XXXXXX)
export FABRIKAM_SEED_API_KEY=fdk_local_demo_key
gateway=127.0.0.1:$((FABRIKAM_PORT_BASE + 9))
system=""
finish() {
  if [[ -n $system ]]; then kill -TERM "$system" 2>/dev/null || true; wait "$system" 2>/dev/null || true; fi
  rm -rf "$FABRIKAM_DATA_DIR"
}
trap finish EXIT

bash "$root/tools/run.sh" --no-build >"$FABRIKAM_DATA_DIR/run.out" 2>&1 &
system=$!
for _ in $(seq 1 600); do
  grep -q "system up" "$FABRIKAM_DATA_DIR/run.out" && break
  kill -0 "$system" 2>/dev/null || { cat "$FABRIKAM_DATA_DIR/run.out"; exit 1; }
  sleep 0.1
done
grep -q "system up" "$FABRIKAM_DATA_DIR/run.out" || { echo "e2e-nats: the system did not start"; cat "$FABRIKAM_DATA_DIR/run.out"; exit 1; }

accepted=$(curl -s -X POST "$gateway/v1/deliveries" -H "Authorization: Bearer $FABRIKAM_SEED_API_KEY" -d '{
  "pickupLocation": {"latitude": 47.6101, "longitude": -122.3421},
  "dropoffLocation": {"latitude": 47.6205, "longitude": -122.3493},
  "packageInfo": {"size": "PACKAGE_SIZE_SMALL", "weight": 1.5}}')
id=$(sed -nE 's/.*"deliveryId":"([^"]+)".*/\1/p' <<<"$accepted")
[[ -n $id ]] || { echo "e2e-nats: not accepted: $accepted"; exit 1; }
echo "e2e-nats: accepted $id through JetStream ($FABRIKAM_BROKER)"
stage=""
for _ in $(seq 1 180); do
  status=$(curl -s "$gateway/v1/deliveries/$id/status" -H "Authorization: Bearer $FABRIKAM_SEED_API_KEY")
  stage=$(sed -nE 's/.*"stage":"([A-Z_]+)".*/\1/p' <<<"$status" | head -1)
  [[ $stage == DELIVERY_STAGE_COMPLETED || $stage == DELIVERY_STAGE_FAILED || $stage == DELIVERY_STAGE_CANCELLED ]] && break
  sleep 0.5
done
echo "e2e-nats: final stage $stage"
[[ $stage == DELIVERY_STAGE_COMPLETED ]] || { echo "$status"; tail -5 "$FABRIKAM_DATA_DIR"/logs/*.log; exit 1; }
history=""
for _ in $(seq 1 40); do
  history=$(curl -s "$gateway/v1/deliveries/$id/history" -H "Authorization: Bearer $FABRIKAM_SEED_API_KEY")
  grep -q COMPLETED <<<"$history" && break
  sleep 0.5
done
grep -q COMPLETED <<<"$history" || { echo "e2e-nats: history lacks the completion: $history"; exit 1; }
echo "e2e-nats: history has $(grep -o '"eventId"' <<<"$history" | wc -l) events, the completion included"
if [[ -e $FABRIKAM_DATA_DIR/broker.sqlite ]]; then echo "e2e-nats: a SQLite broker file was created"; exit 1; fi
echo "e2e-nats: OK (no broker.sqlite: every service used JetStream)"
