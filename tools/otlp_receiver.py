#!/usr/bin/env python3
"""A real OTLP/gRPC trace receiver for tests: grpcio serving the collector's
opentelemetry.proto.collector.trace.v1.TraceService with the OpenTelemetry project's own generated
code (PyPI's opentelemetry-proto), so what our exporter sends is decoded by an implementation we
did not write.

Every span received is written as one JSON line to OUTPUT (flushed at once):
  {"service": <resource service.name>, "scope": ..., "traceId": hex, "spanId": hex,
   "parentSpanId": hex or "", "name": ..., "kind": "SPAN_KIND_SERVER"..., "start": ns, "end": ns,
   "attributes": {key: value}, "status": "STATUS_CODE_..."}
It prints `listening on PORT` once it serves (127.0.0.1, port 0 = any free port), and runs until
killed or until --max-seconds pass.

With --count-only it still decodes every request (the same generated code), but writes one line
per request, the number of spans in it, instead of a line per span: the benchmark's collector,
which must not spend on the load generator's core what a collector on another host would.

  otlp_receiver.py OUTPUT [--port N] [--max-seconds S] [--count-only]
"""
import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def any_value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, output, count_only=False):
        self.output = output
        self.count_only = count_only
        self.lock = threading.Lock()

    def Export(self, request, context):
        if self.count_only:
            spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
            with self.lock:
                self.output.write(f"{spans}\n")
                self.output.flush()
            return trace_service_pb2.ExportTraceServiceResponse()
        lines = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "service": resource.get("service.name"),
                        "resource": resource,
                        "scope": scope_spans.scope.name,
                        "traceId": span.trace_id.hex(),
                        "spanId": span.span_id.hex(),
                        "parentSpanId": span.parent_span_id.hex(),
                        "traceState": span.trace_state,
                        "name": span.name,
                        "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "flags": span.flags,
                        "attributes": {kv.key: any_value(kv.value) for kv in span.attributes},
                        "status": trace_pb2.Status.StatusCode.Name(span.status.code),
                        "statusMessage": span.status.message,
                    }, sort_keys=True))
        with self.lock:
            for line in lines:
                self.output.write(line + "\n")
            self.output.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--count-only", action="store_true", help="write each request's span count, not its spans")
    args = parser.parse_args()
    # A parent may have started us with signals blocked (Foundation's Process does): SIGTERM stops us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())
    output = open(args.output, "a", encoding="utf-8")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(output, args.count_only), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening on {port}", flush=True)
    server.wait_for_termination(timeout=args.max_seconds)
    server.stop(grace=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
