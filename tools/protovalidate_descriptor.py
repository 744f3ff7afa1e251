"""Writes buf/validate/validate.proto as a FileDescriptorSet (for protoc's --descriptor_set_in).

The field-rule annotations in proto/ (issue 14) import buf/validate/validate.proto. It is not
kept in this repository: PyPI's protovalidate package (pinned in tools/requirements.txt) ships
it as a serialized file descriptor, and this script writes that out at generation time.

    .venv/bin/python tools/protovalidate_descriptor.py OUT.binpb [--with-imports]

Without --with-imports the set holds validate.proto alone (protoc finds its imports, the
well-known types, on its own include path); with it, the well-known files it imports too.
"""
import sys

from protovalidate._gen.buf.validate import validate_pb
from protobuf.wkt.google.protobuf.descriptor_pb import FileDescriptorSet


def main() -> None:
    out = sys.argv[1]
    desc = validate_pb.desc()
    files = []
    if "--with-imports" in sys.argv[2:]:
        files.extend(dep.proto for dep in desc.dependencies)
    files.append(desc.proto)
    with open(out, "wb") as handle:
        handle.write(FileDescriptorSet(file=files).to_binary())


if __name__ == "__main__":
    main()
