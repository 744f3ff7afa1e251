#!/usr/bin/env bash
# `make contract-record`: records the consumer contracts (docs/contract-tests.md, "Consumer contracts").
# Runs the consumers' own tests with FABRIKAM_CONTRACT_RECORD set, so that every process they
# start (gateway, workflow, supervisor, drone-simulator, dronectl, ...) writes down each call it
# makes (Sources/RPC/Client/CallRecording.swift), then turns the recording into
# contracts/consumers/<consumer>.json (tools/contract/consumer_contracts.py build). Commit the
# files; `make contract-test` replays them against the real providers.
#   CONTRACT_RECORD_FILTER: the tests that run (default: the end-to-end suites, ServiceTests' and
#   dronectl's, which run against the whole system; the others talk to test servers);
#   CONTRACT_RECORD_SKIP: tests left out (default: those that SIGKILL a process, whose calls lose
#   their answers, so what came after them cannot be told from the recording).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The recording is kept (git-ignored) for `consumer_contracts.py build` runs of your own.
recording=$root/.build/contract-recording
rm -rf "$recording"
swift build --build-tests
FABRIKAM_CONTRACT_RECORD=$recording FABRIKAM_REQUIRE_ENGINES=1 \
    bash tools/with-postgres.sh bash tools/with-nats.sh \
    swift test --skip-build --filter "${CONTRACT_RECORD_FILTER:-EndToEndTests}" --skip "${CONTRACT_RECORD_SKIP:-workflowCrashResumes|ingestionKilledMidStream}"
"$python" tools/protovalidate_descriptor.py "$work/protovalidate.binpb"
# shellcheck disable=SC2046
(cd proto && protoc --descriptor_set_in="$work/protovalidate.binpb" -I . -I /usr/include --include_imports \
    --descriptor_set_out="$work/contract.binpb" $(find . -name '*.proto' -printf '%P\n' | sort))
rm -f contracts/consumers/*.json
"$python" tools/contract/consumer_contracts.py build --descriptor-set "$work/contract.binpb" \
    --recordings "$recording" --out contracts/consumers
"$python" tools/contract/consumer_contracts.py coverage --descriptor-set "$work/contract.binpb" contracts/consumers/*.json || true
# The first replay against the real providers (a fresh system per file, as make contract-test
# does): an interaction it cannot reproduce is marked `pending` with the reason (Pact's pending
# interactions), reported by every replay and judged once a recording passes.
CONSUMER_CONTRACTS_MARK_PENDING=1 bash tools/contract-test.sh --consumers || true
