#!/usr/bin/env python3
"""grpcio's interop TestService with server reflection: a server nobody here wrote, for dronectl.

The TestService is tools/interop/grpcio_server.py's; this adds grpcio-reflection (which serves
grpc.reflection.v1alpha only, so dronectl's fallback from v1 is exercised) unless --no-reflection,
and one benchmark aid: a StreamingOutputCall whose metadata has `x-bench-repeat: N` answers with
its first ResponseParameters repeated N times (so a 100,000-message stream needs a small request).

Usage: grpcio_reflection_server.py --port N [--stubs DIR] [--no-reflection]
Prints `listening 127.0.0.1:PORT` once it accepts calls; serves until SIGTERM or SIGINT.
"""

import argparse
import importlib
import os
import signal
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

import grpc  # noqa: E402
import grpcio_server  # noqa: E402
import interop_stubs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--stubs", help="output dir of tools/interop/generate.sh (default: generate now)")
    parser.add_argument("--no-reflection", action="store_true", help="serve without reflection")
    args = parser.parse_args()

    stubs = interop_stubs.load(args.stubs)
    servicer = grpcio_server.make_servicer(stubs)
    original = servicer.StreamingOutputCall

    def streaming_output_call(request, context):
        repeat = dict(context.invocation_metadata() or ()).get("x-bench-repeat")
        if repeat is None or not request.response_parameters:
            yield from original(request, context)
            return
        size = request.response_parameters[0].size
        response = stubs.messages_pb2.StreamingOutputCallResponse(
            payload=stubs.messages_pb2.Payload(body=b"\0" * size))
        for _ in range(int(repeat)):
            yield response

    servicer.StreamingOutputCall = streaming_output_call
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    stubs.test_pb2_grpc.add_TestServiceServicer_to_server(servicer, server)
    if not args.no_reflection:
        from grpc_reflection.v1alpha import reflection

        # Reflection answers from the default descriptor pool: test_pb2_grpc imports only the
        # message modules, so the module that declares TestService itself is imported here.
        importlib.import_module("grpc.testing.test_pb2")

        names = ["grpc.testing.TestService", reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    if port == 0:
        sys.exit(f"cannot bind 127.0.0.1:{args.port}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
