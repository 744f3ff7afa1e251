import GRPCProtos
import ProtobufKit
import RPC
import Testing

/// Connection-level flow control: a stream whose reader stops holds back its own stream window
/// only, never the connection's, on our client and on our server.
@Suite("Connection flow control", .serialized)
struct FlowControlTests {
    /// StreamingOutputCall writes 16 KiB messages as fast as it may (counting them);
    /// StreamingInputCall never reads its requests; UnaryCall answers with the caller's address.
    static func router(written: Shared<Int>) -> Router {
        var router = Router()
        router.serverStreaming(Methods.StreamingOutputCall.self) { _, writer, _ in
            var response = Grpc.Testing.StreamingOutputCallResponse()
            var payload = Grpc.Testing.Payload()
            payload.body = [UInt8](repeating: 1, count: 16 * 1024)
            response.payload = payload
            for _ in 0..<1000 {
                try await writer.write(response)
                written.withLock { $0 += 1 }
            }
        }
        router.clientStreaming(Methods.StreamingInputCall.self) { _, _ in
            try await Task.sleep(for: .seconds(60))  // a reader that stopped: reads nothing
            return Grpc.Testing.StreamingInputCallResponse()
        }
        router.unary(Methods.UnaryCall.self) { _, context in
            var response = Grpc.Testing.SimpleResponse()
            response.hostname = context.peer
            return response
        }
        return router
    }

    @Test("a server stream and a client stream whose readers stop do not stall 1,000 unary calls on the same connection")
    func stoppedReadersStallOnlyTheirStreams() async throws {
        let written = Shared(0)
        try await withServer(Self.router(written: written)) { client, _ in
            try await withThrowingTaskGroup(of: Void.self) { stalled in
                // Our client stops reading a server stream after one message: the server fills
                // the stream's window (64 KiB) and more than the old connection window.
                stalled.addTask {
                    try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                        var iterator = responses.makeAsyncIterator()
                        _ = try await iterator.next()
                        try await Task.sleep(for: .seconds(60))
                    }
                }
                // Our server's handler reads nothing of a client stream of 1 MiB.
                stalled.addTask {
                    _ = try await client.clientStreaming(Methods.StreamingInputCall.self) { writer in
                        var request = Grpc.Testing.StreamingInputCallRequest()
                        var payload = Grpc.Testing.Payload()
                        payload.body = [UInt8](repeating: 2, count: 16 * 1024)
                        request.payload = payload
                        for _ in 0..<64 { try await writer.write(request) }
                        try await Task.sleep(for: .seconds(60))
                    }
                }
                // Both stalls in place: the server's writer has passed 96 KiB (more than a
                // 64 KiB connection window) and the upload has had time to fill its windows.
                while written.withLock({ $0 }) < 6 { try await Task.sleep(for: .milliseconds(10)) }
                try await Task.sleep(for: .milliseconds(300))

                let peers = try await withThrowingTaskGroup(of: Set<String>.self) { group in
                    for _ in 0..<10 {
                        group.addTask {
                            var peers = Set<String>()
                            for _ in 0..<100 {
                                let response = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(),
                                                                      options: CallOptions(timeout: .seconds(10)))
                                peers.insert(response.hostname)
                            }
                            return peers
                        }
                    }
                    return try await group.reduce(into: Set<String>()) { $0.formUnion($1) }
                }
                #expect(peers.count == 1, "the unary calls used \(peers.count) connections: \(peers)")
                stalled.cancelAll()
                // The stalled calls end CANCELLED: their errors are not what this test is about.
                while let _ = try? await stalled.next() {}
            }
        }
    }
}
