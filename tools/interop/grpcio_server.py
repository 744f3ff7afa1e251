#!/usr/bin/env python3
"""gRPC interop TestService server on grpcio, the reference peer for our client.

Implements the server features of gRPC's interop-test-descriptions.md that the
client cases need: EmptyCall, UnaryCall, StreamingOutputCall,
StreamingInputCall, FullDuplexCall, HalfDuplexCall, plus Echo Status, Echo
Metadata, CompressedResponse and the interval_us delays. UnimplementedCall
(and the UnimplementedService) are deliberately left unimplemented, so they
answer UNIMPLEMENTED.

Usage: grpcio_server.py --port N [--stubs DIR]
Binds 127.0.0.1 only, prints `listening 127.0.0.1:PORT` once it accepts calls
(with --port 0 the port is the one the OS picked) and serves until SIGTERM or
SIGINT.

Limits of grpcio (documented here once, referred to below):
  * grpcio never tells a handler whether a request message arrived compressed:
    neither the per-message compressed flag nor the `grpc-encoding` header is
    visible (grpc core consumes both). So the CompressedRequest feature
    (`expect_compressed`: INVALID_ARGUMENT for an uncompressed request) cannot
    be implemented; requests with expect_compressed are served like any other.
    A client's client_compressed_unary / client_compressed_streaming cases
    therefore fail their probe step against this server.
  * Gzip is supported in both directions: grpc core decompresses gzip/deflate
    requests and advertises them in grpc-accept-encoding by default, and
    responses are gzip-compressed on request (response_compressed /
    ResponseParameters.compressed) through set_compression and
    disable_next_message_compression.
  * CacheableUnaryCall is not implemented (grpcio cannot set the HTTP
    cache-control response headers the feature is about).
"""

import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

import interop_stubs

ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"

# Numeric gRPC status code -> grpc.StatusCode (each member's value is (int, name)).
_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def _status_code(number):
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def _echo_metadata(context):
    """Echo Metadata: initial key back as initial metadata, -bin key as trailers.

    Initial metadata is sent at once, so any set_compression must come first.
    """
    initial, trailing = [], []
    for key, value in context.invocation_metadata() or ():
        if key == ECHO_INITIAL_KEY:
            initial.append((key, value))
        elif key == ECHO_TRAILING_KEY:
            trailing.append((key, value))
    if initial:
        context.send_initial_metadata(initial)
    if trailing:
        context.set_trailing_metadata(trailing)


def _abort_if_status_requested(context, echo_status):
    """Echo Status: a non-OK response_status ends the call with that status."""
    if echo_status.code != 0:
        context.abort(_status_code(echo_status.code), echo_status.message)


def make_servicer(stubs):
    pb = stubs.messages_pb2

    def check_response_type(request, context):
        # messages.proto only defines COMPRESSABLE; anything else is unsupported.
        if request.response_type != pb.COMPRESSABLE:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unsupported response_type {request.response_type}",
            )

    def payload(size):
        return pb.Payload(type=pb.COMPRESSABLE, body=bytes(size))

    class TestService(stubs.test_pb2_grpc.TestServiceServicer):
        def EmptyCall(self, request, context):
            _echo_metadata(context)
            return stubs.empty_pb2.Empty()

        def UnaryCall(self, request, context):
            # expect_compressed cannot be checked with grpcio (module docstring).
            if request.HasField("response_compressed"):
                context.set_compression(
                    grpc.Compression.Gzip
                    if request.response_compressed.value
                    else grpc.Compression.NoCompression
                )
            _echo_metadata(context)
            _abort_if_status_requested(context, request.response_status)
            check_response_type(request, context)
            return pb.SimpleResponse(payload=payload(request.response_size))

        def StreamingOutputCall(self, request, context):
            # All ResponseParameters are known up front, so the call is
            # gzip-enabled only if some message asks for compression; the
            # others are then sent uncompressed (see _responses).
            if any(p.compressed.value for p in request.response_parameters):
                context.set_compression(grpc.Compression.Gzip)
            _echo_metadata(context)
            _abort_if_status_requested(context, request.response_status)
            check_response_type(request, context)
            yield from _responses(context, request)

        def StreamingInputCall(self, request_iterator, context):
            # expect_compressed cannot be checked with grpcio (module docstring).
            _echo_metadata(context)
            total = sum(len(request.payload.body) for request in request_iterator)
            return pb.StreamingInputCallResponse(aggregated_payload_size=total)

        def FullDuplexCall(self, request_iterator, context):
            # Compression is per call in grpcio and must be chosen before the
            # initial metadata goes out, i.e. before the first request is read:
            # gzip is enabled up front and switched off per message where a
            # ResponseParameters does not ask for it (see _responses).
            context.set_compression(grpc.Compression.Gzip)
            _echo_metadata(context)
            for request in request_iterator:
                _abort_if_status_requested(context, request.response_status)
                check_response_type(request, context)
                yield from _responses(context, request)

        def HalfDuplexCall(self, request_iterator, context):
            context.set_compression(grpc.Compression.Gzip)
            _echo_metadata(context)
            requests = list(request_iterator)  # all requests first, then answer
            for request in requests:
                _abort_if_status_requested(context, request.response_status)
                check_response_type(request, context)
                yield from _responses(context, request)

        # UnimplementedCall: inherited from the generated base class, which
        # answers UNIMPLEMENTED. CacheableUnaryCall: see module docstring.

    def _responses(context, request):
        """One response per ResponseParameters, honouring interval_us and compression."""
        for params in request.response_parameters:
            if params.interval_us > 0:
                time.sleep(params.interval_us / 1e6)
            if not params.compressed.value:
                # Only has an effect on calls set to gzip; harmless otherwise.
                context.disable_next_message_compression()
            yield pb.StreamingOutputCallResponse(payload=payload(params.size))

    return TestService()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--stubs", help="output dir of generate.sh (default: generate now)")
    args = parser.parse_args()

    stubs = interop_stubs.load(args.stubs)
    # Streaming handlers hold a worker thread for the whole call, so leave
    # plenty of room for concurrent streams.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    stubs.test_pb2_grpc.add_TestServiceServicer_to_server(make_servicer(stubs), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    if port == 0:
        sys.exit(f"cannot bind 127.0.0.1:{args.port}")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stop.wait(0.5):
        pass
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
