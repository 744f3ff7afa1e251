"""A provider of the telemetry contract that is not ours: FlightControlService and TelemetryService
(proto/fabrikam/dronedelivery/telemetry/v1/telemetry.proto) on grpcio, the reference gRPC
implementation, with grpcio-reflection, its requests checked by protovalidate's Python
implementation and refused with INVALID_ARGUMENT and a google.rpc.BadRequest in
grpc-status-details-bin (grpcio-status). `dronectl contract verify` is held to it by
Tests/DroneCTLTests/ContractVerifyTests.swift, so that the verification is shown to work against
a server that shares nothing with ours but the .proto files.

    .venv/bin/python tools/contract/grpcio_telemetry_provider.py [--port 0] [--fault NAME]

NAME (one deliberate fault, issue 14 item 6): undeclared-status (AbortFlight answers
ALREADY_EXISTS), stream-ends-early (ReportPositions acknowledges one batch and ends),
response-breaks-rule (AssignFlight answers a plan without its required drone id).
Prints `listening 127.0.0.1:PORT` once it accepts calls; serves until killed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from concurrent import futures

import grpc
import protovalidate
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "fabrikam.dronedelivery.telemetry.v1"


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """telemetry.proto and its imports, buf/validate/validate.proto among them (from PyPI's
    protovalidate, as tools/contract-test.sh builds its images)."""
    with tempfile.TemporaryDirectory() as scratch:
        validate = os.path.join(scratch, "protovalidate.binpb")
        out = os.path.join(scratch, "telemetry.binpb")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools/protovalidate_descriptor.py"), validate], check=True)
        subprocess.run(["protoc", f"--descriptor_set_in={validate}", "-I", os.path.join(ROOT, "proto"), "-I", "/usr/include",
                        "--include_imports", f"--descriptor_set_out={out}", "fabrikam/dronedelivery/telemetry/v1/telemetry.proto"],
                       check=True)
        with open(out, "rb") as handle:
            return descriptor_pb2.FileDescriptorSet.FromString(handle.read())


def field_path(violation) -> str:
    path = ""
    for element in (violation.field.elements if violation.field else []):
        path += ("." if path else "") + element.field_name
        if element.subscript is not None:
            path += "[%s]" % str(element.subscript.value).lower()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault", choices=["undeclared-status", "stream-ends-early", "response-breaks-rule"])
    args = parser.parse_args()

    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set().file:
        pool.Add(file)

    def message(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))

    validator = protovalidate.Validator()

    def check(request, context):
        violations = validator.collect_violations(request)
        if not violations:
            return
        bad_request = error_details_pb2.BadRequest()
        for violation in violations:
            bad_request.field_violations.add(field=field_path(violation.proto), description=violation.proto.message)
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        context.abort_with_status(rpc_status.to_status(status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=f"invalid {request.DESCRIPTOR.full_name}", details=[detail])))

    AssignFlightRequest, AssignFlightResponse = message("AssignFlightRequest"), message("AssignFlightResponse")
    AbortFlightRequest, AbortFlightResponse = message("AbortFlightRequest"), message("AbortFlightResponse")
    ReportPositionsRequest, ReportPositionsResponse = message("ReportPositionsRequest"), message("ReportPositionsResponse")

    def assign_flight(request, context):
        check(request, context)
        response = AssignFlightResponse(created=True)
        response.plan.CopyFrom(request.plan)
        if args.fault == "response-breaks-rule":
            response.plan.drone_id = ""
        return response

    def abort_flight(request, context):
        check(request, context)
        if args.fault == "undeclared-status":
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"flight {request.delivery_id} was already aborted")
        return AbortFlightResponse(aborted=True)

    def report_positions(requests, context):
        for batch in requests:
            check(batch, context)
            response = ReportPositionsResponse()
            for position in batch.positions:
                response.acks.add(drone_id=position.drone_id, sequence=position.sequence)
            yield response
            if args.fault == "stream-ends-early":
                return

    def handler(function, request, response, streaming=False):
        if streaming:
            return grpc.stream_stream_rpc_method_handler(function, request_deserializer=request.FromString,
                                                         response_serializer=response.SerializeToString)
        return grpc.unary_unary_rpc_method_handler(function, request_deserializer=request.FromString,
                                                   response_serializer=response.SerializeToString)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler(f"{PACKAGE}.FlightControlService", {
            "AssignFlight": handler(assign_flight, AssignFlightRequest, AssignFlightResponse),
            "AbortFlight": handler(abort_flight, AbortFlightRequest, AbortFlightResponse),
        }),
        grpc.method_handlers_generic_handler(f"{PACKAGE}.TelemetryService", {
            "ReportPositions": handler(report_positions, ReportPositionsRequest, ReportPositionsResponse, streaming=True),
        }),
    ])
    reflection.enable_server_reflection(
        [f"{PACKAGE}.FlightControlService", f"{PACKAGE}.TelemetryService", reflection.SERVICE_NAME], server, pool=pool)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
