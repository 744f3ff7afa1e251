#!/usr/bin/env python3
"""grpcio's reflection client asks a server about extensions (make interop).

Usage: grpcio_reflection_check.py --port N [--host 127.0.0.1]
Checks, with grpcio-reflection (v1alpha, an implementation that is not ours),
that the server answers all_extension_numbers_of_type (through its
ProtoReflectionDescriptorDatabase) and file_containing_extension for the
google.api.http option (extension 72295728 of google.protobuf.MethodOptions),
and that Google's DescriptorPool, given the files of that answer, resolves the
extension. file_containing_extension is sent with grpcio-reflection's own
request stubs: its database's FindFileContainingExtension never asks the server
with protobuf 7 (the base class it first consults returns None instead of
raising KeyError).
Prints `ok NAME` / `FAIL NAME: reason` per check and `N passed, M failed`.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
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

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask_for_extension(number):
        request = reflection_pb2.ServerReflectionRequest(file_containing_extension=reflection_pb2.ExtensionRequest(
            containing_type=METHOD_OPTIONS, extension_number=number))
        return next(stub.ServerReflectionInfo(iter([request]), timeout=10))

    def extension_files():
        response = ask_for_extension(HTTP_EXTENSION)
        assert response.HasField("file_descriptor_response"), f"answer {response}"
        return [descriptor_pb2.FileDescriptorProto.FromString(raw)
                for raw in response.file_descriptor_response.file_descriptor_proto]

    def file_containing_extension():
        file = extension_files()[-1]
        assert file.name == "google/api/annotations.proto", f"file {file.name}"
        assert [e.name for e in file.extension] == ["http"], f"extensions {file.extension}"

    def unknown_extension():
        response = ask_for_extension(5)
        assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], f"answer {response}"

    def pool_resolves_extension():
        pool = descriptor_pool.DescriptorPool()
        for file in extension_files():  # dependencies first
            pool.Add(file)
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
