import Foundation
import GRPCProtos
import ProtobufKit
import RPC
import Testing
import TestSupport

/// A handler that writes faster than its client reads is paused by HTTP/2 flow control: the
/// client here (raw h2) asks for a big stream and then reads nothing.
@Suite("Write backpressure", .serialized)
struct BackpressureTests {
    /// A StreamingOutputCall that writes 1000 messages of 16 KiB as fast as it may, counting them.
    static func fastWriter(counting written: Shared<Int>) -> Router {
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
        return router
    }

    @Test("a writer to a client that does not read is paused, not buffered without bound")
    func slowReader() async throws {
        let written = Shared(0)
        let router = Self.fastWriter(counting: written)
        let server = RPCServer(router: router)
        let port = try await server.start()
        // The client holds the connection, reading nothing, until the test has counted (or for
        // 60 s at most), rather than for a fixed 1.5 s: on a loaded machine the handler could
        // start only after the client had gone, having written nothing.
        let directory = try makeTemporaryDirectory("backpressure")
        defer { try? FileManager.default.removeItem(at: directory) }
        let done = directory.appendingPathComponent("done").path
        let script = """
        import os, socket, sys, time
        import h2.config, h2.connection
        s = socket.create_connection(("127.0.0.1", \(port)))
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                           (":path", "/grpc.testing.TestService/StreamingOutputCall"),
                           ("content-type", "application/grpc"), ("te", "trailers")])
        c.send_data(1, b"\\x00\\x00\\x00\\x00\\x00", end_stream=True)
        s.sendall(c.data_to_send())
        start = time.monotonic()
        while not os.path.exists(sys.argv[1]) and time.monotonic() - start < 60:
            time.sleep(0.05)  # read nothing: no WINDOW_UPDATE
        """
        let client = Task { try await run(projectPython, ["-c", script, done]) }
        // Once the handler writes, a second more in which a writer that is not paused would go on.
        let writing = try await waitUntil { written.withLock { $0 } > 0 }
        try await Task.sleep(for: .seconds(1))
        let count = written.withLock { $0 }
        _ = FileManager.default.createFile(atPath: done, contents: nil)
        _ = try await client.value
        #expect(writing, "the handler wrote nothing")
        // 64 KiB of window plus 64 KiB queued is about 8 messages of 16 KiB; allow for framing.
        #expect(count > 0 && count < 20, "\(count) messages of 16 KiB written to a client that read nothing")
        await server.shutdown()
    }

    @Test("our client, reading slowly, pushes back on a fast server")
    func slowClientReader() async throws {
        let written = Shared(0)
        let router = Self.fastWriter(counting: written)
        try await withServer(router) { client, _ in
            try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                var iterator = responses.makeAsyncIterator()
                _ = try await iterator.next()
                try await Task.sleep(for: .seconds(1))  // a slow reader
            }
        }
        let count = written.withLock { $0 }
        // The client's 64 KiB unread allowance, the stream window and the server's 64 KiB queue.
        #expect(count > 0 && count < 40, "\(count) messages of 16 KiB written to a client that read one")
    }

    @Test("bytes held back from an abandoned stream go back to the connection's window")
    func abandonedStreamReturnsWindow() async throws {
        let written = Shared(0)
        let router = Self.fastWriter(counting: written)
        try await withServer(router) { client, _ in
            // Read one message, let the server fill the client's allowance and the stream's
            // window, then walk away: the bytes received but never acknowledged are about a
            // full connection window (64 KiB). Were they lost, the connection would stall.
            try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                var iterator = responses.makeAsyncIterator()
                _ = try await iterator.next()
                try await Task.sleep(for: .milliseconds(500))
            }
            // The same connection must still carry a stream of more than a window's worth. The
            // deadline is a bound against a stall, not a speed requirement: tests run twelve at a
            // time on two cores, where a call can wait seconds to start.
            let options = CallOptions(timeout: .seconds(60))
            let count = try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest(),
                                                         options: options) { responses in
                var count = 0
                for try await _ in responses {
                    count += 1
                    if count == 20 { break }  // 320 KiB: five connection windows
                }
                return count
            }
            #expect(count == 20)
        }
    }
}
