import GRPCProtos
import InteropTesting
import ProtobufKit
import RPC
import Testing

/// Outgoing metadata is checked in one place (`Metadata.validateForSending`), used by the client
/// for request metadata and by the server for response headers and trailers.
@Suite("Outgoing metadata validation", .serialized)
struct MetadataValidationTests {
    static let refused: [(name: String, value: String, problem: String)] = [
        ("x y", "v", "found ' '"),
        (":path", "/x", "found ':'"),
        ("x-ü", "v", "found byte 0xC3"),
        ("", "v", "the name is empty"),
        ("x-line", "a\r\nx-injected: 1", "found CR"),
        ("x-line", "a\nb", "found LF"),
        ("x-tab", "a\tb", "found byte 0x9"),
        ("x-accent", "café", "found byte 0xC3"),
        ("x-space", " padded", "starts or ends with a space"),
        ("x-data-bin", "text", "carries bytes"),
        ("grpc-status", "0", "reserved"),
        ("grpc-timeout", "1S", "reserved"),
        ("content-type", "text/plain", "reserved"),
        ("te", "trailers", "reserved"),
        ("user-agent", "me", "reserved"),
        ("connection", "close", "reserved"),
    ]

    @Test("refused entries, each with an error naming the header", arguments: refused)
    func refusedEntries(entry: (name: String, value: String, problem: String)) {
        var metadata = Metadata()
        metadata.add(entry.name, entry.value)
        let error = #expect(throws: RPCError.self) { try metadata.validateForSending() }
        #expect(error?.code == .internal)
        #expect(error?.message.contains("\"\(entry.name.lowercased())\"") == true, "\(String(describing: error))")
        #expect(error?.message.contains(entry.problem) == true, "\(String(describing: error))")
    }

    @Test("accepted entries")
    func acceptedEntries() throws {
        var metadata = Metadata()
        metadata.add("X-Request-Id", "abc-123")          // folded to lower case
        metadata.add("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        metadata.add("x-empty", "")
        metadata.add("x-symbols", "a b ~!@#$%^&*()_+{}|:\"<>?")
        metadata.add("x-data-bin", binary: [0, 0xff, 0x0d, 0x0a])
        metadata.add("grpc-status-details-bin", binary: [1, 2])
        metadata.add("x.dotted_name-1", "v")
        try metadata.validateForSending()
        var bytes = Metadata()
        bytes.add("x-data", binary: [1])
        let error = #expect(throws: RPCError.self) { try bytes.validateForSending() }
        #expect(error?.message.contains("needs a name ending in -bin") == true)
    }

    @Test("our client refuses bad request metadata before sending anything")
    func clientRefuses() async throws {
        try await withServer(interopTestServiceRouter()) { client, _ in
            var metadata = Metadata()
            metadata.add("x-ok", "fine")
            metadata.add("x-bad", "line\r\nbreak")
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(metadata: metadata))
            }
            #expect(error?.code == .internal)
            #expect(error?.message.contains("\"x-bad\"") == true, "\(String(describing: error))")
            // The connection is fine for the next call.
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        }
    }

    @Test("a status message with a space at either end reaches the client whole (a header value may not start or end with one)")
    func messageWithEdgeSpaces() async throws {
        let messages = ["no API key ", " leading", "  both  ", " "]
        var router = Router()
        router.unary(Methods.UnaryCall.self) { request, _ in
            throw RPCError(.notFound, messages[Int(request.responseSize)])
        }
        try await withServer(router) { client, _ in
            for (index, message) in messages.enumerated() {
                let error = await #expect(throws: RPCError.self) { _ = try await client.unary(Methods.UnaryCall.self, request(responseSize: Int32(index))) }
                #expect(error?.code == .notFound && error?.message == message, "\(String(describing: error))")
            }
        }
    }

    @Test("our server ends a call whose handler set bad metadata with INTERNAL naming the header")
    func serverRefuses() async throws {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { request, context in
            switch request.responseSize {
            case 1: context.addInitialMetadata("x-bad initial", "v")
            case 2: context.addTrailingMetadata("x-bad-trailer", "a\nb")
            default: throw RPCError(.notFound, "gone", metadata: Metadata([("grpc-message", "mine")]))
            }
            return Grpc.Testing.SimpleResponse()
        }
        try await withServer(router) { client, _ in
            for (size, header) in [(1, "x-bad initial"), (2, "x-bad-trailer"), (3, "grpc-message")] {
                let error = await #expect(throws: RPCError.self) { _ = try await client.unary(Methods.UnaryCall.self, request(responseSize: Int32(size))) }
                #expect(error?.code == .internal, "\(String(describing: error))")
                #expect(error?.message.contains("\"\(header)\"") == true, "\(String(describing: error))")
            }
        }
    }
}
