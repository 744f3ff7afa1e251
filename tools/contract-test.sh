#!/usr/bin/env bash
# `make contract-test`: the contracts in proto/fabrikam/dronedelivery checked against what they
# promise (issue 14). Today: the schema rules and the field-rule corpus.
#   1. buf lint with the committed configuration (buf.yaml);
#   2. buf breaking at the WIRE_JSON level against the last released contract set, committed as a
#      buf image (proto/contract/baseline.binpb), so a clean clone can check it offline;
#   3. the field rules (buf.validate): protovalidate's Python implementation finds in every message
#      of Tests/Fixtures/Validation/field-rules.corpus.json exactly what the case expects;
#   4. with --faults: deliberate schema faults (a renamed JSON field, a changed field number, a
#      removed enum value), each applied to a scratch copy of proto/; each must turn steps 1-2
#      red, and the unmodified copy must stay green.
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

case ${1:-} in
--release)
    build_image "$root" "$baseline"
    echo "baseline moved: $baseline (commit it with the release)"
    exit 0 ;;
--faults)
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
    exit $((failures > 0)) ;;
esac

echo "== buf lint, buf breaking (WIRE_JSON) against proto/contract/baseline.binpb"
schema_rules "$root"
echo "✔ schema rules"

# The field rules: protovalidate's own implementation (Python) finds in every message of the
# corpus exactly the violations the case expects. The Swift checks the generator emits are held
# to the same corpus by Tests/CrossImplementationTests/FieldRuleCrossTests.swift (make test).
echo "== field rules: Tests/Fixtures/Validation/field-rules.corpus.json against protovalidate (Python)"
build_image "$root" "$work/rules.binpb"
"$python" tools/crosscheck/protovalidate_check.py --descriptor-set "$work/rules.binpb" \
    --corpus Tests/Fixtures/Validation/field-rules.corpus.json --check
echo "✔ field-rule corpus"
