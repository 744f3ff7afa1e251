#!/usr/bin/env python3
"""Cross-checks the Swift protobuf codecs against Google's Python protobuf.

Usage: python crosscheck.py --descriptor-set SET.pb --work DIR

SET.pb is a FileDescriptorSet built with `protoc --include_imports`. DIR holds,
for each case NAME:
  NAME.case.json   {"message": "<full message name>", "json": {...}}
  NAME.swift.bin   the Swift binary encoding of the case
  NAME.swift.json  the Swift JSON output for the case (default options)
For each case the script parses the corpus JSON into P with Python, checks that
the Swift binary and the Swift JSON both decode to P, compares the Swift JSON
with Python's JSON for P, and writes NAME.python.bin / NAME.python.json for the
Swift side to decode. Only dynamic messages are used (no generated _pb2 code).
"""

import argparse
import glob
import inspect
import json
import math
import os
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf import message_factory

# FieldDescriptor constants (stable across protobuf versions).
LABEL_REPEATED = 3
CPPTYPE_MESSAGE = 10
CPPTYPE_FLOAT_KINDS = (5, 6)  # CPPTYPE_DOUBLE, CPPTYPE_FLOAT


def load_pool(path):
    """Builds a pool holding every file of the set (so Any type URLs resolve)."""
    with open(path, 'rb') as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:  # --include_imports lists dependencies first
        pool.Add(file_proto)
    return pool


def message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, 'GetMessageClass'):  # protobuf >= 4.21
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def _accepts_pool(func):
    return 'descriptor_pool' in inspect.signature(func).parameters


# Very old versions lack the descriptor_pool keyword; decided once, not by
# catching TypeError (which json_format also raises for unknown Any types).
_PARSE_POOL = _accepts_pool(json_format.Parse)
_PRINT_POOL = _accepts_pool(json_format.MessageToJson)


def parse_json(text, msg, pool):
    if _PARSE_POOL:
        return json_format.Parse(text, msg, descriptor_pool=pool)
    return json_format.Parse(text, msg)


def to_json(msg, pool):
    # No default-printing keyword: defaults are omitted, as on the Swift side.
    if _PRINT_POOL:
        return json_format.MessageToJson(msg, descriptor_pool=pool)
    return json_format.MessageToJson(msg)


def is_repeated(field):
    if hasattr(field, 'is_repeated'):  # newer versions deprecate `label`
        return field.is_repeated
    return field.label == LABEL_REPEATED


def same_float(a, b):
    """Bit-level float equality, except that every NaN equals every NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def has_unknown_fields(msg):
    """True if msg or any submessage holds unknown fields (version-neutral)."""
    stripped = type(msg)()
    stripped.CopyFrom(msg)
    stripped.DiscardUnknownFields()
    return stripped.ByteSize() != msg.ByteSize()


def message_diff(a, b, pool, path='$'):
    """Returns the first path where messages a and b differ, or None.

    Any payloads are unpacked and compared as messages, so two encoders that
    order an embedded message's fields (or map entries) differently agree.
    """
    if has_unknown_fields(a) != has_unknown_fields(b):
        return path + ': unknown fields on one side only'
    if a.DESCRIPTOR.full_name == 'google.protobuf.Any' and a.type_url == b.type_url:
        try:
            cls = message_class(pool, a.type_url.split('/')[-1])
            return message_diff(cls.FromString(a.value), cls.FromString(b.value),
                                pool, '%s<%s>' % (path, a.type_url))
        except Exception:  # unresolvable type URL: compare the raw fields below
            pass
    fields_a = {f.number: (f, v) for f, v in a.ListFields()}
    fields_b = {f.number: (f, v) for f, v in b.ListFields()}
    for number in sorted(set(fields_a) | set(fields_b)):
        if number not in fields_a or number not in fields_b:
            field = (fields_a.get(number) or fields_b.get(number))[0]
            return '%s.%s: set on one side only' % (path, field.name)
        field, va = fields_a[number]
        vb = fields_b[number][1]
        where = '%s.%s' % (path, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if set(va) != set(vb):
                return where + ': map keys differ (%r vs %r)' % (sorted(va), sorted(vb))
            value_field = field.message_type.fields_by_name['value']
            for key in sorted(va):
                d = value_diff(value_field, va[key], vb[key], pool, '%s[%r]' % (where, key))
                if d:
                    return d
        elif is_repeated(field):
            if len(va) != len(vb):
                return where + ': %d vs %d elements' % (len(va), len(vb))
            for i, (x, y) in enumerate(zip(va, vb)):
                d = value_diff(field, x, y, pool, '%s[%d]' % (where, i))
                if d:
                    return d
        else:
            d = value_diff(field, va, vb, pool, where)
            if d:
                return d
    return None


def value_diff(field, x, y, pool, path):
    """Compares one value of `field` (never a whole repeated field)."""
    if field.cpp_type == CPPTYPE_MESSAGE:
        return message_diff(x, y, pool, path)
    if field.cpp_type in CPPTYPE_FLOAT_KINDS:
        return None if same_float(x, y) else '%s: %r vs %r' % (path, x, y)
    return None if x == y else '%s: %r vs %r' % (path, x, y)


def messages_equal_or_diff(got, want, pool):
    """None if got equals want; else a description of the first difference."""
    if got == want:
        return None
    # == compares Any payloads as bytes; the walk tells encoding-only
    # differences apart from real ones and names the differing field.
    return message_diff(got, want, pool)


def json_diff(got, want, path='$'):
    """First path where parsed JSON values differ, or None.

    Numbers Python printed as integers (integer fields) must come back as equal
    integers; numbers Python printed as floats accept a relative error of 1e-6
    (float32 fields print with fewer digits) and may come back as integers.
    """
    if isinstance(want, bool) or isinstance(got, bool):
        ok = type(got) is type(want) and got == want
    elif isinstance(want, int):
        ok = isinstance(got, int) and got == want
    elif isinstance(want, float):
        ok = isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-6)
    elif isinstance(want, dict):
        if not isinstance(got, dict):
            return '%s: expected an object, got %s' % (path, json.dumps(got)[:80])
        for key in sorted(set(got) | set(want)):
            if key not in got:
                return '%s.%s: missing (expected %s)' % (path, key, json.dumps(want[key])[:80])
            if key not in want:
                return '%s.%s: unexpected (got %s)' % (path, key, json.dumps(got[key])[:80])
            d = json_diff(got[key], want[key], '%s.%s' % (path, key))
            if d:
                return d
        return None
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return '%s: expected %d-element array, got %s' % (
                path, len(want), json.dumps(got)[:80])
        for i, (g, w) in enumerate(zip(got, want)):
            d = json_diff(g, w, '%s[%d]' % (path, i))
            if d:
                return d
        return None
    else:  # str or None
        ok = type(got) is type(want) and got == want
    if ok:
        return None
    return '%s: expected %s, got %s' % (path, json.dumps(want), json.dumps(got))


def read(path, mode='rb'):
    with open(path, mode) as f:
        return f.read()


def check_case(work, name, pool):
    """Runs one case; returns None on success or the failure reason."""
    base = os.path.join(work, name)
    case = json.loads(read(base + '.case.json', 'r'))
    cls = message_class(pool, case['message'])

    # a. The reference message, parsed by Python from the corpus JSON.
    p = parse_json(json.dumps(case['json']), cls(), pool)
    python_json = to_json(p, pool)

    # e. Python's encodings for the Swift side (written even if checks fail).
    with open(base + '.python.bin', 'wb') as f:
        f.write(p.SerializeToString(deterministic=True))
    with open(base + '.python.json', 'w') as f:
        f.write(python_json)

    # b. The Swift binary encoding decodes to the same message.
    if not os.path.exists(base + '.swift.bin'):
        return 'missing %s.swift.bin' % name
    try:
        q = cls.FromString(read(base + '.swift.bin'))
    except Exception as e:
        return 'swift.bin does not decode: %s' % e
    d = messages_equal_or_diff(q, p, pool)
    if d:
        return 'binary from Swift decodes to a different message: ' + d

    # c. The Swift JSON parses to the same message.
    if not os.path.exists(base + '.swift.json'):
        return 'missing %s.swift.json' % name
    swift_json = read(base + '.swift.json').decode('utf-8')
    try:
        r = parse_json(swift_json, cls(), pool)
    except Exception as e:
        return 'swift.json does not parse: %s' % e
    d = messages_equal_or_diff(r, p, pool)
    if d:
        return 'JSON from Swift parses to a different message: ' + d

    # d. The Swift JSON matches Python's JSON, compared as parsed values.
    d = json_diff(json.loads(swift_json), json.loads(python_json))
    if d:
        return 'JSON from Swift differs from Python JSON at ' + d
    return None


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--descriptor-set', required=True, help='FileDescriptorSet (.pb)')
    parser.add_argument('--work', required=True, help='directory with the case files')
    args = parser.parse_args(argv)  # exits with status 2 on usage errors

    if not os.path.isdir(args.work):
        parser.error('not a directory: %s' % args.work)
    try:
        pool = load_pool(args.descriptor_set)
    except Exception as e:
        parser.error('cannot load descriptor set %s: %s' % (args.descriptor_set, e))
    names = sorted(os.path.basename(p)[:-len('.case.json')]
                   for p in glob.glob(os.path.join(args.work, '*.case.json')))
    if not names:
        parser.error('no *.case.json files in %s' % args.work)

    passed = failed = 0
    for name in names:
        try:
            reason = check_case(args.work, name, pool)
        except Exception as e:  # bad case file, unknown message, parse error...
            reason = '%s: %s' % (type(e).__name__, e)
        if reason is None:
            passed += 1
            print('ok %s' % name)
        else:
            failed += 1
            print('FAIL %s: %s' % (name, reason))
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
