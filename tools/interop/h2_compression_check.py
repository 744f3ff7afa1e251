#!/usr/bin/env python3
"""Reads a TestService server's response frames with a raw HTTP/2 client (Python's h2) and
checks each response message's compressed flag against what the request asked for.

grpcio's client cannot see the flag, so this client decodes the gRPC message prefix itself:
a 1-byte compressed flag, a 4-byte big-endian length, then the message (gzip when the flag is
set, decompressed here with Python's gzip module and parsed with Google's protobuf runtime).

Usage: h2_compression_check.py --port N [--stubs DIR]
Prints `ok NAME` / `FAIL NAME: reason` per case and `N passed, M failed`; exits 1 on failure.
"""

import argparse
import gzip
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events

import interop_stubs

HOST = "127.0.0.1"


def call(port, method, request_bytes, accept_encoding):
    """One call over a fresh connection; returns (headers, [(flag, payload)], trailers)."""
    sock = socket.create_connection((HOST, port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", f"/grpc.testing.TestService/{method}"),
               (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")]
    if accept_encoding is not None:
        headers.append(("grpc-accept-encoding", accept_encoding))
    conn.send_headers(1, headers)
    conn.send_data(1, struct.pack(">BI", 0, len(request_bytes)) + request_bytes, end_stream=True)
    sock.sendall(conn.data_to_send())
    response_headers, trailers, body = None, None, b""
    deadline = time.monotonic() + 10
    ended = False
    while not ended and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                response_headers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended = True
        sock.sendall(conn.data_to_send())
    sock.close()
    messages = []
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        messages.append((flag, body[5:5 + length]))
        body = body[5 + length:]
    return response_headers, messages, trailers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stubs", help="output dir of generate.sh (default: generate now)")
    args = parser.parse_args()
    pb = interop_stubs.load(args.stubs).messages_pb2
    results = []

    def payload_sizes(flags_and_payloads, response_type):
        sizes = []
        for flag, payload in flags_and_payloads:
            response = response_type.FromString(gzip.decompress(payload) if flag == 1 else payload)
            sizes.append(len(response.payload.body))
        return sizes

    def case(name, method, request, accept_encoding, want_flags, want_sizes, response_type):
        try:
            headers, messages, trailers = call(args.port, method, request.SerializeToString(), accept_encoding)
            status = (trailers or headers or {}).get("grpc-status")
            assert status == "0", f"grpc-status {status}"
            flags = [flag for flag, _ in messages]
            assert flags == want_flags, f"compressed flags {flags}, want {want_flags}"
            if 1 in flags:
                assert headers.get("grpc-encoding") == "gzip", f"grpc-encoding {headers.get('grpc-encoding')}"
            sizes = payload_sizes(messages, response_type)
            assert sizes == want_sizes, f"payload sizes {sizes}, want {want_sizes}"
            results.append(True)
            print(f"ok {name}")
        except Exception as error:  # noqa: BLE001 - every failure is reported
            results.append(False)
            print(f"FAIL {name}: {error}")

    def unary(compressed):
        return pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=31415,
                                response_compressed=pb.BoolValue(value=compressed))

    streaming = pb.StreamingOutputCallRequest(response_parameters=[
        pb.ResponseParameters(size=31415, compressed=pb.BoolValue(value=True)),
        pb.ResponseParameters(size=9265, compressed=pb.BoolValue(value=False)),
        pb.ResponseParameters(size=3589, compressed=pb.BoolValue(value=True))])
    unary_response, stream_response = pb.SimpleResponse, pb.StreamingOutputCallResponse
    case("unary_compressed_when_asked", "UnaryCall", unary(True), "identity,gzip", [1], [31415], unary_response)
    case("unary_uncompressed_when_not_asked", "UnaryCall", unary(False), "identity,gzip", [0], [31415], unary_response)
    case("unary_uncompressed_without_accept_encoding", "UnaryCall", unary(True), None, [0], [31415], unary_response)
    case("unary_uncompressed_when_gzip_not_accepted", "UnaryCall", unary(True), "identity, deflate", [0], [31415], unary_response)
    case("streaming_flag_per_message", "StreamingOutputCall", streaming, "gzip", [1, 0, 1], [31415, 9265, 3589], stream_response)
    case("streaming_uncompressed_without_accept_encoding", "StreamingOutputCall", streaming, None, [0, 0, 0],
         [31415, 9265, 3589], stream_response)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
