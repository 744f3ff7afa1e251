#!/usr/bin/env python3
"""grpcio's reflection client asks a server about extensions (make interop).

Usage: grpcio_reflection_check.py --port N [--host 127.0.0.1]
Checks, through grpc_reflection's ProtoReflectionDescriptorDatabase (v1alpha,
an implementation that is not ours), that the server answers
all_extension_numbers_of_type and file_containing_extension for the
google.api.http option (extension 72295728 of google.protobuf.MethodOptions),
and that a descriptor pool built from its answers resolves the extension.
Prints `ok NAME` / `FAIL NAME: reason` per check and `N passed, M failed`.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

METHOD_OPTIONS = "google.protobuf.MethodOptions"
HTTP_EXTENSION = 72295728


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    channel = grpc.insecure_channel(f"{args.host}:{args.port}")
    database = ProtoReflectionDescriptorDatabase(channel)
    results = []

    def check(name, body):
        try:
            body()
            results.append(True)
            print(f"ok {name}")
        except Exception as error:  # noqa: BLE001 - every failure is reported, none hidden
            results.append(False)
            print(f"FAIL {name}: {error!r}")

    def extension_numbers():
        numbers = list(database.FindAllExtensionNumbers(METHOD_OPTIONS))
        assert HTTP_EXTENSION in numbers, f"numbers {numbers}"

    def file_containing_extension():
        file = database.FindFileContainingExtension(METHOD_OPTIONS, HTTP_EXTENSION)
        assert file.name == "google/api/annotations.proto", f"file {file.name}"
        assert [e.name for e in file.extension] == ["http"], f"extensions {file.extension}"

    def unknown_extension():
        try:
            database.FindFileContainingExtension(METHOD_OPTIONS, 5)
        except KeyError:
            return
        raise AssertionError("an unknown extension number was found")

    def pool_resolves_extension():
        pool = descriptor_pool.DescriptorPool(database)
        extension = pool.FindExtensionByNumber(pool.FindMessageTypeByName(METHOD_OPTIONS), HTTP_EXTENSION)
        assert extension.full_name == "google.api.http", extension.full_name
        assert extension.message_type.full_name == "google.api.HttpRule", extension.message_type.full_name

    check("reflection_all_extension_numbers_of_type", extension_numbers)
    check("reflection_file_containing_extension", file_containing_extension)
    check("reflection_unknown_extension_not_found", unknown_extension)
    check("reflection_descriptor_pool_resolves_extension", pool_resolves_extension)
    channel.close()
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
