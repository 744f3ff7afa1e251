#!/usr/bin/env python3
"""Rich errors (google.rpc.Status in grpc-status-details-bin) between grpcio and another gRPC
implementation, through grpcio-status (rpc_status.from_call / to_status) and the standard
details of googleapis-common-protos.

  grpcio_rich_errors.py client --port N
      Calls /grpc.testing.TestService/UnaryCall on a server that answers INVALID_ARGUMENT
      "the delivery request is invalid" with details: google.rpc.BadRequest (two field
      violations), google.rpc.ErrorInfo and google.rpc.RetryInfo (2.5 s), and checks them with
      rpc_status.from_call. Prints `ok NAME` / `FAIL NAME: reason` and `N passed, M failed`.

  grpcio_rich_errors.py server --port 0
      Serves /grpc.testing.TestService/UnaryCall, which aborts with exactly those details, and
      /grpc.testing.TestService/EmptyCall, which answers NOT_FOUND with a
      grpc-status-details-bin whose code (FAILED_PRECONDITION) disagrees with grpc-status.
      Prints `listening 127.0.0.1:PORT` (and writes PORT to --port-file, if given) and serves
      until SIGTERM.

Both methods are called with raw bytes (an empty request), so no stubs are needed.
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

MESSAGE = "the delivery request is invalid"


def expected_status():
    bad_request = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="package_info.weight", description="must be more than 0"),
        error_details_pb2.BadRequest.FieldViolation(field="dropoff_location", description="is required",
                                                    reason="REQUIRED"),
    ])
    info = error_details_pb2.ErrorInfo(reason="INVALID_DELIVERY", domain="fabrikam.dronedelivery",
                                       metadata={"delivery_id": "dlv-1"})
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    details = []
    for detail in (bad_request, info, retry):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=MESSAGE, details=details)


def identity(data):
    return data


def run_client(port):
    results = []

    def check(name, condition, detail):
        results.append(bool(condition))
        print(f"ok {name}" if condition else f"FAIL {name}: {detail}")

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/grpc.testing.TestService/UnaryCall", request_serializer=identity,
                                   response_deserializer=identity)
        try:
            call(b"", timeout=10)
            check("rich_error_status", False, "the call succeeded")
        except grpc.RpcError as error:
            check("rich_error_status", error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == MESSAGE,
                  f"{error.code()} {error.details()!r}")
            try:
                status = rpc_status.from_call(error)  # raises if the code or message disagree
            except ValueError as mismatch:
                status = None
                check("rich_error_from_call", False, str(mismatch))
            if status is not None:
                check("rich_error_from_call", status == expected_status(), f"got {status}")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


def run_server(port, port_file=None):
    def unary(request, context):
        context.abort_with_status(rpc_status.to_status(expected_status()))

    def mismatched(request, context):
        wrong = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="not the call's status")
        context.set_trailing_metadata([("grpc-status-details-bin", wrong.SerializeToString())])
        context.abort(grpc.StatusCode.NOT_FOUND, "no such delivery")

    handler = grpc.method_handlers_generic_handler("grpc.testing.TestService", {
        "UnaryCall": grpc.unary_unary_rpc_method_handler(unary, request_deserializer=identity, response_serializer=identity),
        "EmptyCall": grpc.unary_unary_rpc_method_handler(mismatched, request_deserializer=identity,
                                                         response_serializer=identity),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"listening 127.0.0.1:{bound}", flush=True)
    if port_file:
        with open(port_file + ".tmp", "w") as out:
            out.write(str(bound))
        os.replace(port_file + ".tmp", port_file)
    while not stop.wait(0.5):
        pass
    server.stop(grace=0.5).wait()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["client", "server"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port-file", help="server: also write the bound port to this file")
    args = parser.parse_args()
    sys.exit(run_client(args.port) if args.mode == "client" else run_server(args.port, args.port_file))


if __name__ == "__main__":
    main()
