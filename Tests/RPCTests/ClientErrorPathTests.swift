import GRPCProtos
import HTTP2
import InteropTesting
import NIOCore
import ProtobufKit
@testable import RPC
import Synchronization
import Testing
import TestSupport

/// The client's error paths (issue 12, A5): a call's stream is closed however the caller's body
/// ends, and a response that is not gRPC (a proxy's error page) gets the status gRPC's
/// HTTP-to-status table gives it.
@Suite("Client error paths", .serialized)
struct ClientErrorPathTests {
    struct CallerGaveUp: Error {}

    /// Streams the client still has open, counted on each connection's event loop.
    static func openStreams(_ client: RPCClient) async throws -> Int {
        let handles = client.pool.withLock { Array($0.connections.values) }
        var open = 0
        for handle in handles {
            let state = handle.state
            open += try await handle.channel.eventLoop.submit { state.value.streams.count }.get()
        }
        return open
    }

    @Test("a caller's body that throws its own error resets the stream: the server's handler is cancelled")
    func bodyErrorClosesTheStream() async throws {
        let started = Flag()
        let cancelled = Flag()
        var router = Router()
        // Streams a response every 10 ms until the client goes away.
        router.serverStreaming(Methods.StreamingOutputCall.self) { _, writer, _ in
            started.set()
            do {
                while true {
                    try await writer.write(Grpc.Testing.StreamingOutputCallResponse())
                    try await Task.sleep(for: .milliseconds(10))
                }
            } catch {
                cancelled.set()
                throw error
            }
        }
        // Reads requests until the client ends them (it never does here).
        router.bidirectional(Methods.FullDuplexCall.self) { requests, _, _ in
            for try await _ in requests {}
        }
        try await withServer(router) { client, _ in
            await #expect(throws: CallerGaveUp.self) {
                try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                    for try await _ in responses { throw CallerGaveUp() }
                }
            }
            #expect(started.isSet)
            let handlerCancelled = try await waitUntil { cancelled.isSet }
            #expect(handlerCancelled, "the server's handler went on: the stream was left open")
            var open = -1
            let streamsClosed = try await waitUntil { open = try await Self.openStreams(client); return open == 0 }
            #expect(streamsClosed, "\(open) streams still open")

            // The same for a bidirectional call whose body throws before reading anything.
            await #expect(throws: CallerGaveUp.self) {
                try await client.bidirectional(Methods.FullDuplexCall.self) { writer, _ in
                    try await writer.write(Grpc.Testing.StreamingOutputCallRequest())
                    throw CallerGaveUp()
                }
            }
            let bidirectionalStreamsClosed = try await waitUntil { open = try await Self.openStreams(client); return open == 0 }
            #expect(bidirectionalStreamsClosed, "\(open) streams still open")
        }
    }

    /// One row of gRPC's doc/http-grpc-status-mapping.md, as a proxy would answer.
    struct NonGRPCResponse: Sendable, CustomTestStringConvertible {
        var status: Int
        var contentType: String?
        /// nil: the headers end the stream (no body).
        var body: String?
        var expected: RPCError.Code
        var testDescription: String { "\(status) \(contentType ?? "(no content-type)")\(body == nil ? "" : " with a body") -> \(expected)" }
    }

    static let nonGRPCResponses: [NonGRPCResponse] = [
        NonGRPCResponse(status: 502, contentType: "text/html", body: "<html><body>502 Bad Gateway</body></html>", expected: .unavailable),
        NonGRPCResponse(status: 503, contentType: "text/plain", body: "upstream connect error", expected: .unavailable),
        NonGRPCResponse(status: 504, contentType: "text/html", body: nil, expected: .unavailable),
        NonGRPCResponse(status: 429, contentType: "text/plain", body: "slow down", expected: .unavailable),
        NonGRPCResponse(status: 400, contentType: "text/plain", body: "bad request", expected: .internal),
        NonGRPCResponse(status: 401, contentType: nil, body: nil, expected: .unauthenticated),
        NonGRPCResponse(status: 403, contentType: "text/html", body: "<h1>Forbidden</h1>", expected: .permissionDenied),
        NonGRPCResponse(status: 404, contentType: "text/html", body: "not found", expected: .unimplemented),
        NonGRPCResponse(status: 500, contentType: "text/html", body: "oops", expected: .unknown),
        // A 200 that is not gRPC (a web server on the gRPC port): UNKNOWN, as grpc-go says.
        NonGRPCResponse(status: 200, contentType: "text/html", body: "<html>welcome</html>", expected: .unknown),
        // gRPC's status code even when the HTTP status says otherwise: not gRPC's content-type.
        NonGRPCResponse(status: 502, contentType: "application/grpc-web-text-not", body: "AAAA", expected: .unavailable),
    ]

    @Test("a response that is not gRPC maps through gRPC's HTTP-to-status table, with its HTTP status and content-type in the message",
          arguments: nonGRPCResponses)
    func nonGRPCResponse(_ row: NonGRPCResponse) async throws {
        let peer = try await RawPeer.start { _, event, session in
            if case .endStream(let streamID) = event {
                RawPeer.answer(session, streamID: streamID, status: row.status, contentType: row.contentType, body: row.body)
            }
        }
        let client = RPCClient(host: "127.0.0.1", port: peer.port)
        let error = await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(timeout: .seconds(10)))
        }
        #expect(error?.code == row.expected, "\(String(describing: error))")
        #expect(error?.message.contains(String(row.status)) == true, "\(String(describing: error))")
        if let contentType = row.contentType {
            #expect(error?.message.contains(contentType) == true, "\(String(describing: error))")
        }
        // The connection stays usable for the next call (a stream error, not a connection error).
        #expect(try await Self.openStreams(client) == 0)
        await client.close()
        await peer.close()
    }

    @Test("a gRPC response with +proto or parameters in its content-type is accepted")
    func grpcContentTypeVariants() {
        #expect(ResponseHead.isGRPC(contentType: "application/grpc"))
        #expect(ResponseHead.isGRPC(contentType: "application/grpc+proto"))
        #expect(ResponseHead.isGRPC(contentType: "Application/GRPC; charset=utf-8"))
        #expect(!ResponseHead.isGRPC(contentType: "application/grpc-web"))
        #expect(!ResponseHead.isGRPC(contentType: "text/html"))
    }
}
