#!/usr/bin/env bash
# `make contract-test`: the contracts in proto/fabrikam/dronedelivery checked against what they
# promise (issue 14): the schema rules, the field-rule corpus, provider verification, and the
# gateway's OpenAPI document against the running gateway.
#   1. buf lint with the committed configuration (buf.yaml);
#   2. buf breaking at the WIRE_JSON level against the last released contract set, committed as a
#      buf image (proto/contract/baseline.binpb), so a clean clone can check it offline;
#   3. the field rules (buf.validate): protovalidate's Python implementation finds in every message
#      of Tests/Fixtures/Validation/field-rules.corpus.json exactly what the case expects;
#   4. deliberate schema faults (a renamed JSON field, a changed field number, a removed enum
#      value), each applied to a scratch copy of proto/; each must turn steps 1-2 red, and the
#      unmodified copy must stay green (only this stage: --faults);
#   5. provider verification: the whole system started with tools/run.sh, then
#      `dronectl contract verify` against every service process (docs/contract-tests.md,
#      "Provider verification"): the example scenarios, a request built from the field rules per method,
#      a refused request per field rule, every response decoded and checked against its rules,
#      every status one the method declares (proto/fabrikam/dronedelivery/statuses.json);
#   6. the provider-side faults (an undeclared status, a stream that ends early, a response that
#      breaks a field rule), each served by the test provider of ContractVerifyTests, each of
#      which must turn the verification red, the unmodified provider green (steps 5-6: --verify);
#   7. the gateway's public contract: the whole system started with tools/run.sh, its OpenAPI
#      document (GET /openapi.json) checked by openapi-spec-validator, then schemathesis with
#      every check (--checks all), positive and negative cases (examples, coverage and fuzzing
#      phases), against the running gateway; about a minute (this stage alone: --openapi).
#      Bounded: CONTRACT_TEST_MAX_EXAMPLES cases per operation and phase, grpc-timeout on every
#      call (the gateway honours it on a tracking stream too; it used to drop it, and the
#      fuzzing phase then stalled on a stream of heartbeats), --request-timeout per request, and
#      `timeout` on the whole run. tools/contract/schemathesis_hooks.py gives the generator the
#      rules across two values that OpenAPI cannot state, and corrects one verdict (a
#      FAILED_PRECONDITION 400; it says why).
# Every stage runs even when one before it failed; each prints one line (✔ or ✘, its time) and
# its output when it fails, then a summary. JUnit XML for CI goes to $CONTRACT_TEST_REPORT
# (default .build/contract-test/junit.xml): one test case per stage, and schemathesis's own
# cases (one per API operation), and dronectl contract verify's (one suite per service). The
# exit status is non-zero when any stage failed.
# Moving the baseline on a release: `make contract-baseline` (tools/contract-test.sh --release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=${BUF:-$root/.venv/bin/buf}
baseline=$root/proto/contract/baseline.binpb

python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The field rules (buf.validate) import buf/validate/validate.proto, which is not in this
# repository: PyPI's protovalidate ships it (tools/protovalidate_descriptor.py writes it out),
# and buf could only fetch it from the Buf Schema Registry, which CI cannot reach. So buf reads
# an image that protoc builds (validate.proto comes in with --descriptor_set_in), with buf.yaml's
# rules rewritten for image paths (no module root, ignore paths without proto/, validate.proto
# ignored like the other third-party files).
"$python" "$root/tools/protovalidate_descriptor.py" "$work/protovalidate.binpb"

# build_image DIR OUT [protoc flags]: every .proto of DIR/proto as an image (imports included).
build_image() {
    local dir=$1 out=$2; shift 2
    # shellcheck disable=SC2046
    (cd "$dir/proto" && protoc --descriptor_set_in="$work/protovalidate.binpb" -I . -I /usr/include --include_imports "$@" \
        --descriptor_set_out="$out" $(find . -name '*.proto' -printf '%P\n' | sort))
}

# schema_rules DIR: lint and breaking for the tree in DIR (buf.yaml + proto/); 0 when both pass.
schema_rules() {
    local image config
    image=$(mktemp -p "$work" image.XXXXXX.binpb)
    config=$(mktemp -p "$work" buf.XXXXXX.yaml)
    build_image "$1" "$image" --include_source_info || return 1
    sed -e '/^modules:/d' -e '/^  - path: proto$/d' -e 's#^    - proto/#    - #' \
        -e 's#^  ignore:$#  ignore:\n    - buf#' "$1/buf.yaml" > "$config"
    "$buf" lint "$image" --config "$config" && "$buf" breaking "$image" --against "$baseline" --config "$config"
}

if [[ ${1:-} == --release ]]; then
    build_image "$root" "$baseline"
    echo "baseline moved: $baseline (commit it with the release)"
    exit 0
fi

# Stage 4: each fault must turn the schema rules red; the unmodified copy stays green.
faults() {
    scratch=$work/faults
    mkdir -p "$scratch"
    failures=0
    # fault NAME FILE SED-EXPRESSION: apply to a fresh copy; the schema rules must go red.
    fault() {
        rm -rf "$scratch/tree" && mkdir -p "$scratch/tree"
        cp -r buf.yaml proto "$scratch/tree/"
        local file=$scratch/tree/proto/$2
        sed -i -E "$3" "$file"
        if cmp -s "$file" "proto/$2"; then echo "✘ fault '$1': the edit did not apply to $2"; failures=$((failures + 1)); return; fi
        if schema_rules "$scratch/tree" > "$scratch/out" 2>&1; then
            echo "✘ fault '$1' was not caught"; failures=$((failures + 1))
        else
            echo "✔ fault '$1' caught: $(head -1 "$scratch/out")"
        fi
    }
    rm -rf "$scratch/tree" && mkdir -p "$scratch/tree" && cp -r buf.yaml proto "$scratch/tree/"
    if schema_rules "$scratch/tree" > "$scratch/out" 2>&1; then echo "✔ the unmodified copy passes"
    else echo "✘ the unmodified copy fails:"; cat "$scratch/out"; failures=$((failures + 1)); fi
    fault "renamed JSON field (Package.weight -> weight_kg)" fabrikam/dronedelivery/package/v1/package.proto \
        's/^  double weight = 3( |;)/  double weight_kg = 3\1/'
    fault "changed field number (Package.tag 4 -> 9)" fabrikam/dronedelivery/package/v1/package.proto \
        's/^  string tag = 4( |;)/  string tag = 9\1/'
    fault "removed enum value (PACKAGE_SIZE_LARGE)" fabrikam/dronedelivery/common/v1/common.proto \
        '/^  PACKAGE_SIZE_LARGE = 3;/d'
    fault "a lint rule broken (a field named in camelCase)" fabrikam/dronedelivery/package/v1/package.proto \
        's/^  string owner_id = 5;/  string ownerId = 5;/'
    return $((failures > 0))
}

# Stage 3: protovalidate's own implementation (Python) finds in every message of the corpus
# exactly the violations the case expects. The Swift checks the generator emits are held to the
# same corpus by Tests/CrossImplementationTests/FieldRuleCrossTests.swift (make test).
field_rule_corpus() {
    build_image "$root" "$work/rules.binpb" &&
    "$python" tools/crosscheck/protovalidate_check.py --descriptor-set "$work/rules.binpb" \
        --corpus Tests/Fixtures/Validation/field-rules.corpus.json --check
}

# Stage 5: the OpenAPI document against the running gateway.
#   CONTRACT_TEST_MAX_EXAMPLES (default 20) bounds the cases per operation and phase;
#   CONTRACT_TEST_PORT_BASE (default 36051) moves the services' ports (tools/run.sh), the
#   gateway takes a free one.
openapi_contract() {
    local system=$work/system launcher status=0
    (swift build --product gateway && swift build) > "$work/build.log" 2>&1 || { cat "$work/build.log"; return 1; }
    mkdir -p "$system"
    FABRIKAM_DATA_DIR=$system/data FABRIKAM_PORT_BASE=${CONTRACT_TEST_PORT_BASE:-36051} FABRIKAM_GATEWAY_PORT=0 \
        FABRIKAM_LOG_LEVEL=warning bash tools/run.sh --no-build > "$system/run.log" 2>&1 &
    launcher=$!
    for _ in $(seq 1 600); do grep -q "system up" "$system/run.log" && break; kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
    if ! grep -q "system up" "$system/run.log"; then cat "$system/run.log"; kill -TERM "$launcher" 2>/dev/null; wait "$launcher" 2>/dev/null; return 1; fi
    local address url key=fdk_local_demo_key
    address=$(grep -E '^  gateway ' "$system/run.log" | grep -o '127.0.0.1:[0-9]*')
    url=http://$address
    echo "system up, gateway at $url"
    {
        curl -fsS "$url/openapi.json" -o "$system/openapi.json" &&
        "$python" -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))' "$system/openapi.json" &&
        echo "openapi-spec-validator: the document is valid OpenAPI 3.1" &&
        # A delivery of the demo account, so calls by id can reach the services, not only 404.
        curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/json' "$url/v1/deliveries" -d \
            '{"owner":{"accountId":"acct-demo","userId":"contract-test"},"pickupLocation":{"latitude":47.61,"longitude":-122.34},"dropoffLocation":{"latitude":47.62,"longitude":-122.35},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5}}' &&
        echo &&
        # The hooks give the generator three rules of the API that are not rules on one value,
        # and drop ST202 only for a 400 whose status is FAILED_PRECONDITION (a refusal that
        # depends on state; tools/contract/schemathesis_hooks.py says why); no check is turned off.
        # grpc-timeout bounds every call, a tracking stream included (it would otherwise stay
        # open, with heartbeats, as long as the delivery runs); the whole run is bounded too.
        PYTHONPATH=$root/tools/contract SCHEMATHESIS_HOOKS=schemathesis_hooks \
        timeout 300 "$root/.venv/bin/schemathesis" run "$url/openapi.json" -H "Authorization: Bearer $key" -H "grpc-timeout: 3S" \
            --checks all --phases examples,coverage,fuzzing --mode all \
            --max-examples "${CONTRACT_TEST_MAX_EXAMPLES:-20}" --generation-deterministic --seed 1 \
            --request-timeout 10 --max-response-time 5 --no-color \
            --report junit --report-junit-path "$logs/schemathesis.xml"
    } || status=1
    kill -TERM "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
    if [[ $status != 0 ]]; then echo "--- the gateway's log (last 40 lines)"; tail -40 "$system/data/logs/gateway.log" 2>/dev/null || true; fi
    return $status
}

# Stage 6: provider verification. The whole system started with tools/run.sh (loopback, ports
# from CONTRACT_TEST_VERIFY_PORT_BASE, default 38051; the gateway takes a free one), then
# `dronectl contract verify` against every service process: the example scenarios of
# proto/fabrikam/dronedelivery/examples, a request built from the field rules for every other
# method, a refused request for every field rule, every response decoded and checked against its
# rules, every status one the method declares (proto/fabrikam/dronedelivery/statuses.json).
# One JUnit suite per service ($logs/verify-*.xml, merged into the report).
provider_verification() {
    local system=$work/verify launcher status=0 name address dronectl
    swift build > "$work/verify-build.log" 2>&1 || { cat "$work/verify-build.log"; return 1; }
    dronectl=$(swift build --show-bin-path)/dronectl
    mkdir -p "$system"
    FABRIKAM_DATA_DIR=$system/data FABRIKAM_PORT_BASE=${CONTRACT_TEST_VERIFY_PORT_BASE:-38051} FABRIKAM_GATEWAY_PORT=0 \
        FABRIKAM_LOG_LEVEL=warning bash tools/run.sh --no-build > "$system/run.log" 2>&1 &
    launcher=$!
    for _ in $(seq 1 600); do grep -q "system up" "$system/run.log" && break; kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
    if ! grep -q "system up" "$system/run.log"; then cat "$system/run.log"; kill -TERM "$launcher" 2>/dev/null; wait "$launcher" 2>/dev/null; return 1; fi
    while read -r name address; do
        [[ $name == gateway ]] && continue  # JSON/HTTP: the OpenAPI stage's (--openapi)
        echo "--- $name ($address)"
        "$dronectl" contract verify --server "$address" --junit "$logs/verify-$name.xml" || status=1
    done < <(grep -E '^  [a-z]+ +127\.0\.0\.1:[0-9]+$' "$system/run.log" | awk '{print $1, $2}')
    kill -TERM "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
    return $status
}

# Stage 7: the provider-side faults (issue 14 item 6) must each turn the verification red: a
# provider on the project's RPC runtime (Tests/DroneCTLTests/ContractVerifyTests.swift) that
# answers an undeclared status, ends a stream early, or answers a response that breaks a field
# rule, each on its own, and that provider unmodified must pass. The faults live in that test's
# provider only, never in a service. Builds the tests (incremental after `make test`).
provider_faults() {
    swift build --build-tests > "$work/faults-build.log" 2>&1 || { cat "$work/faults-build.log"; return 1; }
    local status=0
    swift test --skip-build --filter ContractVerifyTests > "$work/faults-test.log" 2>&1 || status=$?
    if [[ $status == 0 ]]; then grep -E '^✔ Test ' "$work/faults-test.log"; else cat "$work/faults-test.log"; fi
    return $status
}

# Stage 8: consumer contracts (issue 14 item 4; docs/contract-tests.md, "Consumer contracts"). The files in
# contracts/consumers/ were recorded from the consumers' own tests (`make contract-record`):
#   * every RPC of proto/ must be some consumer's interaction (coverage);
#   * dronectl, a real consumer, gets its recorded answers from a stub made of its contract
#     alone (grpcio, no provider running);
#   * the faults the replay must catch, each served by a stub with that one fault (another
#     status, an answer without a value a later step uses, a stream that ends early), and the
#     unmodified stub passing;
#   * every file replayed against the real providers: the whole system started with tools/run.sh
#     for each file (ports from CONTRACT_TEST_CONSUMER_PORT_BASE, default 40051), every step the
#     status and the shape of answer its consumer relies on. One JUnit suite per consumer.
consumer_contracts() {
    local status=0 file name address tool=("$python" tools/contract/consumer_contracts.py)
    build_image "$root" "$work/consumers.binpb" || return 1
    "${tool[@]}" coverage --descriptor-set "$work/consumers.binpb" contracts/consumers/*.json || status=1
    swift build > "$work/consumers-build.log" 2>&1 || { cat "$work/consumers-build.log"; return 1; }
    "${tool[@]}" consumer-check --descriptor-set "$work/consumers.binpb" --contract contracts/consumers/dronectl.json \
        --dronectl "$(swift build --show-bin-path)/dronectl" || status=1
    # shellcheck disable=SC2046
    "${tool[@]}" faults --descriptor-set "$work/consumers.binpb" $(printf -- '--contract %s ' contracts/consumers/*.json) || status=1
    # Each file on a system of its own, as the consumers' tests ran (fast flights, six drones),
    # so that one consumer's state never decides another's replay.
    for file in contracts/consumers/*.json; do
        local system launcher servers=()
        system=$work/consumers-$(basename "$file" .json)
        mkdir -p "$system"
        FABRIKAM_DATA_DIR=$system/data FABRIKAM_PORT_BASE=${CONTRACT_TEST_CONSUMER_PORT_BASE:-40051} FABRIKAM_GATEWAY_PORT=0 \
            FABRIKAM_LOG_LEVEL=warning FABRIKAM_TIME_SCALE=60 FABRIKAM_TICK_MS=200 FABRIKAM_DRONES=6 \
            bash tools/run.sh --no-build > "$system/run.log" 2>&1 &
        launcher=$!
        for _ in $(seq 1 600); do grep -q "system up" "$system/run.log" && break; kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
        if ! grep -q "system up" "$system/run.log"; then cat "$system/run.log"; kill -TERM "$launcher" 2>/dev/null; wait "$launcher" 2>/dev/null; return 1; fi
        while read -r name address; do
            [[ $name == gateway ]] || servers+=(--server "$address")
        done < <(grep -E '^  [a-z]+ +127\.0\.0\.1:[0-9]+$' "$system/run.log" | awk '{print $1, $2}')
        "${tool[@]}" replay --descriptor-set "$work/consumers.binpb" "${servers[@]}" ${CONSUMER_CONTRACTS_MARK_PENDING:+--mark-pending} \
            --junit "$logs/verify-consumer-$(basename "$file" .json).xml" "$file" || status=1
        kill -TERM "$launcher" 2>/dev/null || true
        wait "$launcher" 2>/dev/null || true
    done
    return $status
}

# stage NAME COMMAND...: runs one stage with its output in a log; one line for people, one test
# case for the JUnit report.
report=${CONTRACT_TEST_REPORT:-$root/.build/contract-test/junit.xml}
logs=$(dirname "$report")
mkdir -p "$logs"
rm -f "$logs/schemathesis.xml" "$logs"/stage-*.log "$logs"/verify-*.xml
stages=()
failed=0
stage() {
    local name=$1 log started elapsed status=0
    shift
    log=$logs/stage-$((${#stages[@]} + 1)).log
    started=$(date +%s.%N)
    printf '== %s\n' "$name"
    "$@" > "$log" 2>&1 || status=$?
    elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [[ $status == 0 ]]; then
        printf '✔ %s (%ss)\n' "$name" "$elapsed"
        grep -E '^(✔|✘)' "$log" | sed 's/^/    /' || true
    else
        printf '✘ %s (%ss, exit %s); its output:\n' "$name" "$elapsed" "$status"
        tail -150 "$log" | sed 's/^/    /'
        echo "    (the whole output: $log)"
        failed=$((failed + 1))
    fi
    stages+=("$name"$'\t'"$status"$'\t'"$elapsed"$'\t'"$log")
}

case ${1:-} in
--faults) stage "schema faults, each caught by the schema rules" faults ;;
--openapi) stage "the gateway's OpenAPI document against the running gateway (schemathesis, every check)" openapi_contract ;;
--consumers) stage "consumer contracts: coverage of every RPC, dronectl against its stub, faults caught, every file replayed against the real providers" consumer_contracts ;;
--verify)
    stage "provider verification: dronectl contract verify against every service of the running system" provider_verification
    stage "provider faults (undeclared status, a stream that ends early, a response that breaks a field rule), each caught" provider_faults ;;
"")
    stage "buf lint, buf breaking (WIRE_JSON) against proto/contract/baseline.binpb" schema_rules "$root"
    stage "field rules: Tests/Fixtures/Validation/field-rules.corpus.json against protovalidate (Python)" field_rule_corpus
    stage "schema faults, each caught by the schema rules" faults
    stage "provider verification: dronectl contract verify against every service of the running system" provider_verification
    stage "provider faults (undeclared status, a stream that ends early, a response that breaks a field rule), each caught" provider_faults
    stage "the gateway's OpenAPI document against the running gateway (schemathesis, every check)" openapi_contract
    stage "consumer contracts: coverage of every RPC, dronectl against its stub, faults caught, every file replayed against the real providers" consumer_contracts ;;
*) echo "usage: tools/contract-test.sh [--faults | --openapi | --verify | --consumers | --release]" >&2; exit 2 ;;
esac

# The JUnit report: a suite of the stages, and schemathesis's suite when it ran.
printf '%s\n' "${stages[@]}" > "$work/stages.tsv"
"$python" - "$report" "$logs/schemathesis.xml" "$work/stages.tsv" <<'PY'
import glob, os, sys
import xml.etree.ElementTree as ET
report, extra, stages = sys.argv[1], sys.argv[2], sys.argv[3]
verify = sorted(glob.glob(os.path.join(os.path.dirname(report), "verify-*.xml")))
root = ET.Element("testsuites", name="contract-test")
suite = ET.SubElement(root, "testsuite", name="contract-test stages")
tests = failures = 0
for line in open(stages).read().splitlines():
    if not line:
        continue
    name, status, elapsed, log = line.split("\t")
    tests += 1
    case = ET.SubElement(suite, "testcase", classname="contract-test", name=name, time=elapsed)
    output = open(log, errors="replace").read()
    if status != "0":
        failures += 1
        failure = ET.SubElement(case, "failure", message=f"exit status {status}")
        failure.text = output[-20000:]
    ET.SubElement(case, "system-out").text = output[-20000:]
suite.set("tests", str(tests)); suite.set("failures", str(failures)); suite.set("errors", "0")
if os.path.exists(extra):
    try:
        theirs = ET.parse(extra).getroot()
    except ET.ParseError as error:  # schemathesis stopped before writing it (killed, timed out)
        broken = ET.SubElement(root, "testsuite", name="schemathesis", tests="1", failures="0", errors="1")
        ET.SubElement(ET.SubElement(broken, "testcase", classname="schemathesis", name="report"), "error",
                      message=f"{extra} is not complete: {error}")
    else:
        for child in (theirs.findall("testsuite") if theirs.tag == "testsuites" else [theirs]):
            root.append(child)
for path in verify:  # dronectl contract verify: a suite per service
    try:
        for child in ET.parse(path).getroot().findall("testsuite"):
            root.append(child)
    except ET.ParseError as error:
        broken = ET.SubElement(root, "testsuite", name=os.path.basename(path), tests="1", failures="0", errors="1")
        ET.SubElement(ET.SubElement(broken, "testcase", classname="contract verify", name="report"), "error",
                      message=f"{path} is not complete: {error}")
ET.ElementTree(root).write(report, encoding="utf-8", xml_declaration=True)
PY

echo "== summary"
for entry in "${stages[@]}"; do
    IFS=$'\t' read -r name status elapsed _ <<< "$entry"
    if [[ $status == 0 ]]; then printf '  ✔ %-90s %6ss\n' "$name" "$elapsed"; else printf '  ✘ %-90s %6ss\n' "$name" "$elapsed"; fi
done
echo "  JUnit XML: $report"
if ((failed > 0)); then echo "contract-test: $failed of ${#stages[@]} stages failed"; exit 1; fi
echo "contract-test: all ${#stages[@]} stages passed"
