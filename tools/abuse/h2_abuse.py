#!/usr/bin/env python3
"""Abuses a gRPC server over raw HTTP/2 (Python's h2 package, plus hand-built frames where h2
will not misbehave) and checks that it answers each attack with GOAWAY(ENHANCE_YOUR_CALM) or the
right per-stream refusal (an oversized header list is a stream error, not the end of the
connection), and that it keeps serving a well-behaved client afterwards.

Usage: h2_abuse.py --port N [--case all|name,...] [--tls-ca CA.pem]
`all` is every attack; `late_resets` (a well-behaved client on a slow path) runs only by name.
With --tls-ca every connection is TLS (ALPN h2, the server's certificate checked against CA.pem
for the name localhost): the same attacks against a TLS server.
The server must run with the test limits of Tests/RPCTests/AbuseTests.swift (handshake and idle
timeouts of 1 s, at most 8 connections, at most 5 concurrent streams).
Prints `ok NAME` / `FAIL NAME: reason` per case and `N passed, M failed`; exits 1 on failure.
"""
import argparse
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

ENHANCE_YOUR_CALM = 0xB
NO_ERROR = 0x0
REFUSED_STREAM = 0x7
HOST = "127.0.0.1"
TLS = None  # an ssl.SSLContext with --tls-ca
GRPC_HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.testing.TestService/EmptyCall"),
                (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")]


class Peer:
    """One raw HTTP/2 client connection."""

    def __init__(self, port, handshake=True):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        if TLS is not None:
            self.sock = TLS.wrap_socket(self.sock, server_hostname="localhost")
            if self.sock.selected_alpn_protocol() != "h2":
                raise AssertionError(f"the server chose ALPN {self.sock.selected_alpn_protocol()!r}, not h2")
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if handshake:
            self.conn.initiate_connection()
            self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def events_until(self, predicate, timeout=5.0):
        """Reads until an event satisfies `predicate`; returns it, "closed" on EOF, None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                return "closed"
            if not data:
                return "closed"
            try:
                events = self.conn.receive_data(data)
            except Exception as error:  # the server's frames after GOAWAY may upset h2's state
                return f"h2 error {error}"
            self.flush()
            for event in events:
                if predicate(event):
                    return event
        return None

    def goaway(self, timeout=5.0):
        """Reads raw frames (not through h2, whose state machine may not know streams we opened
        with hand-built frames) until a GOAWAY; returns its error code, or "closed"/None."""
        found = self.goaway_frame(timeout)
        return found[0] if isinstance(found, tuple) else found

    def goaway_frame(self, timeout=5.0):
        """Like `goaway`, but returns (error code, debug data) of the GOAWAY."""
        buffer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[0:3], "big")
                if len(buffer) < 9 + length:
                    break
                frame_type, payload = buffer[3], buffer[9:9 + length]
                buffer = buffer[9 + length:]
                if frame_type == 0x7:  # GOAWAY: last stream id, the error code, debug data
                    return int.from_bytes(payload[4:8], "big"), payload[8:]
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                return "closed"
            if not data:
                return "closed"
            buffer += data
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def frame(frame_type, flags, stream_id, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([frame_type, flags]) + struct.pack(">I", stream_id) + payload


def healthy_call(port):
    """A well-behaved EmptyCall on a fresh connection: must end with grpc-status 0."""
    peer = Peer(port)
    try:
        stream = peer.conn.get_next_available_stream_id()
        peer.conn.send_headers(stream, GRPC_HEADERS)
        peer.conn.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
        peer.flush()
        statuses = []

        def done(event):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                statuses.extend(value for name, value in event.headers if name == "grpc-status")
            return isinstance(event, h2.events.StreamEnded)

        peer.events_until(done)
        return statuses == ["0"]
    finally:
        peer.close()


def expect_calm(peer, what):
    code = peer.goaway()
    if code != ENHANCE_YOUR_CALM:
        raise AssertionError(f"{what}: got {code!r}, want GOAWAY(ENHANCE_YOUR_CALM)")


def rapid_reset(port):
    peer = Peer(port)
    for _ in range(1000):
        stream = peer.conn.get_next_available_stream_id()
        peer.conn.send_headers(stream, GRPC_HEADERS)
        peer.conn.reset_stream(stream, error_code=0x8)
    peer.flush()  # all 1000 open-and-reset pairs in one write
    expect_calm(peer, "1000 opened-and-reset streams")


def late_resets(port):
    """Not an attack, and not in CASES: 1,000 calls, each reset by the client 120 ms into its
    200 ms deadline, as a client whose requests spent 80 ms reaching a loaded server would reset
    them when its own deadline passed. Twice the reset budget's burst: the server must judge
    these resets as deadlines expiring, not as work thrown away, and keep the connection.
    Needs a server whose /grpc.testing.TestService/UnaryCall outlives 200 ms (ResetTests)."""
    peer = Peer(port)
    headers = [(name, "/grpc.testing.TestService/UnaryCall" if name == ":path" else value) for name, value in GRPC_HEADERS]
    headers.append(("grpc-timeout", "200m"))
    peer.events_until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    batch = min(50, peer.conn.remote_settings.max_concurrent_streams)
    total = 0
    while total < 1000:
        streams = []
        for _ in range(batch):
            stream = peer.conn.get_next_available_stream_id()
            peer.conn.send_headers(stream, headers)
            peer.conn.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
            streams.append(stream)
        peer.flush()
        ended = peer.events_until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout=0.12)
        if ended is not None:
            raise AssertionError(f"after {total} late resets, before resetting more: {ended!r}")
        for stream in streams:
            peer.conn.reset_stream(stream, error_code=0x8)  # CANCEL
        peer.flush()
        total += len(streams)
        # The handlers end with their resets; the next batch opens once they have.
        ended = peer.events_until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout=0.1)
        if ended is not None:
            raise AssertionError(f"after {total} late resets: {ended!r}")
    peer.conn.ping(b"late-rst")
    peer.flush()
    alive = peer.events_until(lambda e: isinstance(e, (h2.events.PingAckReceived, h2.events.ConnectionTerminated)))
    if not isinstance(alive, h2.events.PingAckReceived):
        raise AssertionError(f"the connection was cut off after {total} late resets: {alive!r}")
    peer.close()


def ping_flood(port):
    peer = Peer(port)
    for index in range(1000):
        peer.conn.ping(struct.pack(">Q", index))
    peer.flush()
    expect_calm(peer, "1000 PINGs")


def settings_flood(port):
    peer = Peer(port)
    for index in range(1000):
        peer.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100 + index})
    peer.flush()
    expect_calm(peer, "1000 SETTINGS")


def continuation_flood(port):
    peer = Peer(port)
    # HEADERS without END_HEADERS, then CONTINUATION frames that each carry a valid literal field.
    peer.send_raw(frame(0x1, 0x0, 1, b"\x00\x03x-a\x01b"))
    literal = b"\x00\x03x-a\x01b"
    peer.send_raw(b"".join(frame(0x9, 0x0, 1, literal) for _ in range(500)))
    expect_calm(peer, "500 CONTINUATION frames")


def send_header_block(port, headers):
    """Encodes `headers` first (pure-Python HPACK is slow for big blocks, slower than the test
    server's idle timeout), then connects and sends them as HEADERS + CONTINUATION frames."""
    block = hpack.Encoder().encode(headers)
    peer = Peer(port)
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [frame(0x1 if index == 0 else 0x9, 0x4 if index == len(chunks) - 1 else 0x0, 1, chunk)
              for index, chunk in enumerate(chunks)]
    peer.send_raw(b"".join(frames))
    return peer


def huge_headers(port):
    # 200 fields of 1 KB: each one decodes fine, the block as a whole is abuse.
    peer = send_header_block(port, GRPC_HEADERS + [(f"x-big-{i}", "%05d" % i + "a" * 1000) for i in range(200)])
    expect_calm(peer, "a header block of 200 x 1 KB fields")


def huge_header_field(port):
    # One 200 KB field: over the advertised header list size (or nghttp2's own field limit).
    peer = send_header_block(port, GRPC_HEADERS + [("x-big", "a" * 200_000)])
    code = peer.goaway()
    if code not in (ENHANCE_YOUR_CALM, 0x9):  # ours, or nghttp2 refusing the field length itself
        raise AssertionError(f"a 200 KB header field: got {code!r}, want GOAWAY")


def too_many_pings(port):
    # gRPC's keepalive policy: a client pinging more often than the server permits (by default
    # every five minutes, and never without calls) gets strikes, and after two,
    # GOAWAY(ENHANCE_YOUR_CALM) with the debug data "too_many_pings". Four pings, 50 ms apart.
    peer = Peer(port)
    for index in range(4):
        peer.conn.ping(struct.pack(">Q", index))
        peer.flush()
        time.sleep(0.05)
    found = peer.goaway_frame()
    if found != (ENHANCE_YOUR_CALM, b"too_many_pings"):
        raise AssertionError(f"4 pings 50 ms apart: got {found!r}, want GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)")


def oversized_header_list(port):
    # 20 fields of 1 KB: a block under the 32 KiB block limit whose decoded list is over the
    # advertised SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB). A stream error: that call fails with
    # RESOURCE_EXHAUSTED, and the next call on the same connection is served.
    peer = Peer(port)
    try:
        big = GRPC_HEADERS + [(f"x-big-{i}", "%05d" % i + "a" * 1000) for i in range(20)]
        statuses = {}

        def status_of(stream, headers):
            peer.conn.send_headers(stream, headers)
            peer.conn.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
            peer.flush()

            def done(event):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and event.stream_id == stream:
                    statuses[stream] = [value for name, value in event.headers if name == "grpc-status"]
                return isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream

            result = peer.events_until(done)
            if not isinstance(result, h2.events.Event):
                raise AssertionError(f"stream {stream}: no answer ({result!r})")
            return statuses.get(stream)

        first = status_of(1, big)
        if first != ["8"]:
            raise AssertionError(f"an oversized header list: got grpc-status {first!r}, want 8 (RESOURCE_EXHAUSTED)")
        second = status_of(3, GRPC_HEADERS)
        if second != ["0"]:
            raise AssertionError(f"the next call on the same connection: got grpc-status {second!r}, want 0")
    finally:
        peer.close()


def slow_handshake(port):
    peer = Peer(port, handshake=False)
    peer.send_raw(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
    result = peer.events_until(lambda e: False, timeout=4)
    if result not in ("closed",) and not (isinstance(result, str) and result.startswith("h2 error")):
        raise AssertionError(f"a half-finished handshake was kept open: {result!r}")


def idle_connection(port):
    peer = Peer(port)
    code = peer.goaway(timeout=4)
    if code != NO_ERROR:
        raise AssertionError(f"idle connection: got {code!r}, want GOAWAY(NO_ERROR)")


def too_many_connections(port):
    # Open 12 at once (connections of earlier cases may still be closing): the server must accept
    # at most 8 and answer the rest with GOAWAY(ENHANCE_YOUR_CALM). Accepted ones may meanwhile
    # get the idle GOAWAY(NO_ERROR) of the test server's 1 s idle timeout; that counts as accepted.
    peers = [Peer(port) for _ in range(12)]
    try:
        codes = [peer.goaway(timeout=0.2) for peer in peers]
        refused = codes.count(ENHANCE_YOUR_CALM)
        accepted = len(codes) - refused
        if accepted > 8 or refused == 0:
            raise AssertionError(f"{accepted} connections accepted, {refused} refused ({codes}); want at most 8 accepted")
    finally:
        for peer in peers:
            peer.close()


def max_concurrent_streams(port):
    peer = Peer(port)
    peer.events_until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged), timeout=2)
    # Make h2 believe the server allows more, so it lets us exceed the real limit.
    peer.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
    peer.conn.remote_settings.acknowledge()
    for _ in range(10):
        stream = peer.conn.get_next_available_stream_id()
        peer.conn.send_headers(stream, GRPC_HEADERS)
    peer.flush()
    refused = peer.events_until(lambda e: isinstance(e, h2.events.StreamReset) and e.error_code == REFUSED_STREAM)
    if not isinstance(refused, h2.events.StreamReset):
        raise AssertionError(f"streams over the limit were not refused: {refused!r}")
    peer.conn.ping(b"stillok!")
    peer.flush()
    alive = peer.events_until(lambda e: isinstance(e, h2.events.PingAckReceived))
    if not isinstance(alive, h2.events.PingAckReceived):
        raise AssertionError(f"the connection died after REFUSED_STREAM: {alive!r}")
    peer.close()


CASES = [rapid_reset, ping_flood, settings_flood, continuation_flood, huge_headers, huge_header_field, too_many_pings,
         oversized_header_list, slow_handshake, idle_connection, too_many_connections, max_concurrent_streams]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--case", default="all")
    parser.add_argument("--tls-ca", help="speak TLS, trusting this CA (PEM)")
    args = parser.parse_args()
    global TLS
    if args.tls_ca:
        TLS = ssl.create_default_context(cafile=args.tls_ca)
        TLS.set_alpn_protocols(["h2"])
    wanted = [case for case in CASES + [late_resets] if args.case == "all" and case in CASES or case.__name__ in args.case.split(",")]
    passed = failed = 0
    for case in wanted:
        try:
            case(args.port)
            if not healthy_call(args.port):
                raise AssertionError("a well-behaved call failed afterwards")
            print(f"ok {case.__name__}", flush=True)
            passed += 1
        except Exception as error:  # report every case, keep going
            print(f"FAIL {case.__name__}: {error}", flush=True)
            failed += 1
    if TLS is not None:
        print("(every case over TLS)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
