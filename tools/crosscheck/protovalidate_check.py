"""Field rules, cross-checked: protovalidate's own Python implementation (PyPI's protovalidate,
pinned in tools/requirements.txt) validates every message of a corpus, for comparison with the
checks protoc-gen-swiftpbc generates (Tests/CrossImplementationTests/FieldRuleCrossTests.swift).

    python protovalidate_check.py --descriptor-set SET --corpus CORPUS.json [--out OUT.json] [--check]

SET is a FileDescriptorSet of the protos (imports included, buf/validate/validate.proto among
them). CORPUS is {"cases": [...]}, each case {"name", "message", "json", "expect"}; OUT gets, per
case, its name and its violations as {"field", "rule", "message"} (field path as protovalidate
prints it). With --check (make contract-test), every case's violations must be its `expect`
("field rule_id", sorted), or the exit status is 1.
"""
import argparse
import json

import protovalidate
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def field_path(violation) -> str:
    path = ""
    for element in (violation.field.elements if violation.field else []):
        path += ("." if path else "") + element.field_name
        if element.subscript is not None:
            value = element.subscript.value
            path += '["%s"]' % value if isinstance(value, str) else "[%s]" % str(value).lower()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--descriptor-set", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with open(args.descriptor_set, "rb") as handle:
        files = descriptor_pb2.FileDescriptorSet.FromString(handle.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    with open(args.corpus) as handle:
        corpus = json.load(handle)["cases"]
    validator = protovalidate.Validator()
    results = []
    mismatches = 0
    for case in corpus:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(case["message"]))
        message = json_format.Parse(json.dumps(case["json"]), cls(), descriptor_pool=pool)
        violations = [
            {"field": field_path(v.proto), "rule": v.proto.rule_id, "message": v.proto.message}
            for v in validator.collect_violations(message)
        ]
        results.append({"name": case["name"], "violations": violations})
        found = sorted(f"{v['field']} {v['rule']}" for v in violations)
        if args.check and found != case["expect"]:
            mismatches += 1
            print(f"✘ {case['name']}: protovalidate finds {found}, the corpus expects {case['expect']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
    print(f"{len(results)} cases validated" + (f", {mismatches} not as expected" if args.check else ""))
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
