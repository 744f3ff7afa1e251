#!/usr/bin/env python3
"""Cross-checks the Swift protobuf codecs against Google's Python protobuf.

Usage: python crosscheck.py --descriptor-set SET.pb --work DIR

SET.pb: a FileDescriptorSet from `protoc --include_imports`. For each case NAME,
DIR holds NAME.case.json ({"message": "<full name>", "json": {...}}) and the
Swift side's NAME.swift.bin and NAME.swift.json (default JSON options). Python
parses the case JSON into P; the Swift binary and JSON must decode to P, and the
Swift JSON must match Python's JSON for P. NAME.python.bin and NAME.python.json
are written for the Swift side to decode. Only dynamic messages are used (no
generated _pb2 code). Prints `ok NAME` or `FAIL NAME: reason` per case, then
`N passed, M failed`; exits 1 if a case failed, 2 on usage errors.
"""

import argparse
import glob
import inspect
import json
import math
import os
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf import message_factory

# FieldDescriptor constants (stable across protobuf versions).
LABEL_REPEATED = 3
CPPTYPE_FLOATS = (5, 6)  # CPPTYPE_DOUBLE, CPPTYPE_FLOAT
CPPTYPE_MESSAGE = 10


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


# Very old versions lack the descriptor_pool keyword. Decided up front rather
# than by catching TypeError, which json_format also raises for unknown Anys.
_PARSE_POOL = 'descriptor_pool' in inspect.signature(json_format.Parse).parameters
_PRINT_POOL = 'descriptor_pool' in inspect.signature(json_format.MessageToJson).parameters


def parse_json(text, msg, pool):
    kwargs = {'descriptor_pool': pool} if _PARSE_POOL else {}
    return json_format.Parse(text, msg, **kwargs)


def to_json(msg, pool):
    # No default-printing keyword (its name changed across versions): the
    # default omits fields without presence that hold default values.
    kwargs = {'descriptor_pool': pool} if _PRINT_POOL else {}
    return json_format.MessageToJson(msg, **kwargs)


def is_repeated(field):
    if hasattr(field, 'is_repeated'):  # newer versions deprecate `label`
        return field.is_repeated
    return field.label == LABEL_REPEATED


def same_float(a, b):
    """Bit-level float equality (so -0.0 != 0.0), except that NaN == NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same_float32(a, b):
    """True if a and b round to the same float32 (matters for subnormals)."""
    try:
        return struct.pack('<f', a) == struct.pack('<f', b)
    except (OverflowError, struct.error):
        return False


def has_unknown_fields(msg):
    """True if msg or any submessage holds unknown fields (version-neutral)."""
    stripped = type(msg)()
    stripped.CopyFrom(msg)
    stripped.DiscardUnknownFields()
    return stripped.ByteSize() != msg.ByteSize()


def message_diff(a, b, pool, path='$'):
    """Returns the first path where message a (got) differs from b, or None.

    Like == (NaN equals NaN, -0.0 differs from 0.0, unknown fields count) but
    names the differing field and compares Any payloads as unpacked messages,
    not bytes, since encoders may order an embedded message's map entries
    differently.
    """
    if has_unknown_fields(a) != has_unknown_fields(b):
        return path + ': unknown fields on one side'
    if a.DESCRIPTOR.full_name == 'google.protobuf.Any' and a.type_url == b.type_url:
        try:
            cls = message_class(pool, a.type_url.split('/')[-1])
            inner_a, inner_b = cls.FromString(a.value), cls.FromString(b.value)
        except Exception:  # unresolvable or undecodable: compare raw fields
            pass
        else:
            return message_diff(inner_a, inner_b, pool, '%s<%s>' % (path, a.type_url))
    fields_a = {f.number: (f, v) for f, v in a.ListFields()}
    fields_b = {f.number: (f, v) for f, v in b.ListFields()}
    for number in sorted(set(fields_a) | set(fields_b)):
        field = (fields_a.get(number) or fields_b.get(number))[0]
        where = '%s.%s' % (path, field.name)
        if number not in fields_a or number not in fields_b:
            return where + (': unexpected' if number in fields_a else ': missing')
        va, vb = fields_a[number][1], fields_b[number][1]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if set(va) != set(vb):
                return where + ': map keys differ (%r vs %r)' % (sorted(va), sorted(vb))
            value_field = field.message_type.fields_by_name['value']
            pairs = [(value_field, va[k], vb[k], '%s[%r]' % (where, k)) for k in sorted(va)]
        elif is_repeated(field):
            if len(va) != len(vb):
                return where + ': %d vs %d elements' % (len(va), len(vb))
            pairs = [(field, x, y, '%s[%d]' % (where, i))
                     for i, (x, y) in enumerate(zip(va, vb))]
        else:
            pairs = [(field, va, vb, where)]
        for f, x, y, p in pairs:
            if f.cpp_type == CPPTYPE_MESSAGE:
                d = message_diff(x, y, pool, p)
                if d:
                    return d
            elif not (same_float(x, y) if f.cpp_type in CPPTYPE_FLOATS else x == y):
                return '%s: got %r, expected %r' % (p, x, y)
    return None


def json_diff(got, want, path='$'):
    """Returns the first path where parsed JSON values differ, or None.

    A number Python printed as an integer (an integer field) must come back as
    the same integer. A number Python printed as a float may come back as a
    float or an integer within a relative error of 1e-6 (float32 fields print
    with fewer digits), or rounding to the same float32.
    """
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(got) ^ set(want)):
            side, value = ('missing, expected', want) if key in want else ('unexpected', got)
            return '%s.%s: %s %s' % (path, key, side, json.dumps(value[key])[:80])
        children = [(got[k], want[k], '%s.%s' % (path, k)) for k in sorted(want)]
    elif isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        children = [(g, w, '%s[%d]' % (path, i)) for i, (g, w) in enumerate(zip(got, want))]
    else:
        if isinstance(want, float) and not isinstance(got, bool):
            ok = isinstance(got, (int, float)) and (
                math.isclose(got, want, rel_tol=1e-6) or same_float32(got, want))
        else:  # int, str, bool, None, or a container against a non-container
            ok = type(got) is type(want) and got == want
        return None if ok else '%s: expected %s, got %s' % (
            path, json.dumps(want)[:80], json.dumps(got)[:80])
    for g, w, p in children:
        d = json_diff(g, w, p)
        if d:
            return d
    return None


def check_case(work, name, pool):
    """Runs one case; returns None on success or the reason for failure."""
    base = os.path.join(work, name)
    with open(base + '.case.json', encoding='utf-8') as f:
        case = json.load(f)
    cls = message_class(pool, case['message'])

    # a. The reference message, parsed by Python from the corpus JSON.
    p = parse_json(json.dumps(case['json']), cls(), pool)
    python_json = to_json(p, pool)

    # e. Python's encodings for the Swift side (written even if checks fail).
    with open(base + '.python.bin', 'wb') as f:
        f.write(p.SerializeToString(deterministic=True))
    with open(base + '.python.json', 'w', encoding='utf-8') as f:
        f.write(python_json)

    try:
        with open(base + '.swift.bin', 'rb') as f:
            swift_bin = f.read()
        with open(base + '.swift.json', 'rb') as f:
            swift_json = f.read().decode('utf-8')
    except OSError as e:
        return 'cannot read %s: %s' % (e.filename, e.strerror)

    # b, c. The Swift binary encoding and the Swift JSON both decode to P.
    for what, decode in (('binary', lambda: cls.FromString(swift_bin)),
                         ('JSON', lambda: parse_json(swift_json, cls(), pool))):
        try:
            got = decode()
        except Exception as e:
            return '%s from Swift does not decode: %s' % (what, e)
        d = message_diff(got, p, pool)
        if d:
            return '%s from Swift decodes to a different message: %s' % (what, d)

    # d. The Swift JSON matches Python's JSON, compared as parsed values.
    d = json_diff(json.loads(swift_json), json.loads(python_json))
    return 'JSON from Swift differs from Python JSON at ' + d if d else None


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

    failed = 0
    for name in names:
        try:
            reason = check_case(args.work, name, pool)
        except Exception as e:  # bad case file, unknown message, parse error...
            reason = '%s: %s' % (type(e).__name__, e)
        failed += reason is not None
        print('ok ' + name if reason is None else 'FAIL %s: %s' % (name, reason))
    print('%d passed, %d failed' % (len(names) - failed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
