import DroneDeliveryAPI
import RPC
@testable import ServiceKit
import Testing

/// The tracing interceptors' span encoder (`OTLPEncoding.encodeRPCSpan`, sizes computed first,
/// written straight) against the general one (`encodeSpan`, nested messages fixed up after):
/// the same bytes for every shape of RPC span. The general encoder's bytes are checked by
/// OpenTelemetry's own generated code in `SpanEncodingTests`.
@Suite("Span encoding: the interceptors' encoder writes exactly what the general one does")
struct SpanEncoderTests {
    static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    static let parent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-A0B1C2D3E4F5A6B7-01"

    @Test("RPC spans: with and without parent, trace state and error; an error of 200 bytes; long and odd method paths; every status code",
          arguments: [
              ("/fabrikam.dronedelivery.package.v1.PackageService/GetPackage", parent, "", nil as String?, RPCError.Code.ok, SpanKind.server),
              ("/grpc.health.v1.Health/Check", "", "vendor=1,other=two", "NOT_FOUND: no such package", .notFound, .client),
              ("/a.B/C", parent, "", String(repeating: "é", count: 100), .unavailable, .server),
              ("/" + String(repeating: "s", count: 140) + "/" + String(repeating: "m", count: 130), "", "", "", .internal, .client),
              ("no-slash", "not-a-traceparent", "", nil, .unauthenticated, .server),
              ("/only.Service/", parent, "x", nil, .dataLoss, .client),
          ])
    func sameBytes(path: String, parent: String, state: String, error: String?, code: RPCError.Code, kind: SpanKind) {
        let fast = OTLPEncoding.Writer()
        OTLPEncoding.encodeRPCSpan(path: path, code: code, traceparent: Self.traceparent, parentTraceparent: parent, traceState: state,
                                   kind: kind, start: 1_733_000_000_123_456_789, end: 1_733_000_000_124_000_000, error: error, into: fast)
        let general = OTLPEncoding.Writer()
        general.message(2, lengthBytes: 2) { writer in
            OTLPEncoding.encodeSpan(traceparent: Self.traceparent, parentTraceparent: parent, traceState: state, kind: kind,
                                    start: 1_733_000_000_123_456_789, end: 1_733_000_000_124_000_000, rpc: (path, code), name: "",
                                    attributes: [], error: error, into: &writer)
        }
        #expect(fast.bytes == general.bytes)
        #expect(fast.count > 100)
    }

    @Test("a traceparent that is not 55 characters long leaves the ids out, as the general encoder does")
    func noIDs() {
        let fast = OTLPEncoding.Writer()
        OTLPEncoding.encodeRPCSpan(path: "/a.B/C", code: .ok, traceparent: "00-short", parentTraceparent: "", traceState: "", kind: .server,
                                   start: 1, end: 2, error: nil, into: fast)
        let general = OTLPEncoding.Writer()
        general.message(2, lengthBytes: 2) { writer in
            OTLPEncoding.encodeSpan(traceparent: "00-short", parentTraceparent: "", traceState: "", kind: .server, start: 1, end: 2,
                                    rpc: ("/a.B/C", .ok), name: "", attributes: [], error: nil, into: &writer)
        }
        #expect(fast.bytes == general.bytes)
    }
}
