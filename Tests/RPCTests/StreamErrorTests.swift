import Foundation
import GRPCProtos
import InteropTesting
import ProtobufKit
import RPC
import Testing
import TestSupport

/// Errors that belong to one stream stay there: oversized header lists, deadlines of calls
/// whose response is stuck behind flow control, and writers waiting for window.
@Suite("Stream errors", .serialized)
struct StreamErrorTests {
    @Test("a response header list over our client's limit fails that call only")
    func oversizedResponseHeaders() async throws {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { request, context in
            if request.responseSize == 1 {
                for index in 0..<20 { context.addInitialMetadata("x-big-\(index)", String(repeating: "a", count: 1000)) }
            }
            var response = Grpc.Testing.SimpleResponse()
            response.hostname = context.peer
            return response
        }
        try await withServer(router) { client, _ in
            let before = try await client.unary(Methods.UnaryCall.self, request(responseSize: 0)).hostname
            let error = await #expect(throws: RPCError.self) { _ = try await client.unary(Methods.UnaryCall.self, request(responseSize: 1)) }
            #expect(error?.code == .resourceExhausted)
            #expect(error?.message.contains("header list") == true, "\(String(describing: error))")
            let after = try await client.unary(Methods.UnaryCall.self, request(responseSize: 0)).hostname
            #expect(after == before, "the connection was replaced")
        }
    }

    /// A StreamingOutputCall writing 16 KiB messages until it is stopped; records how its last
    /// write ended. With `cancelAfter`, the writing runs in a child task cancelled after that long.
    static func endlessWriter(outcome: Shared<String?>, cancelAfter: Duration? = nil) -> Router {
        var router = Router()
        router.serverStreaming(Methods.StreamingOutputCall.self) { _, writer, _ in
            var response = Grpc.Testing.StreamingOutputCallResponse()
            var payload = Grpc.Testing.Payload()
            payload.body = [UInt8](repeating: 1, count: 16 * 1024)
            response.payload = payload
            let message = response
            @Sendable func writeUntilStopped() async {
                do {
                    while true { try await writer.write(message) }
                } catch {
                    outcome.withLock { $0 = "\(type(of: error)): \(error)" }
                }
            }
            guard let cancelAfter else { return await writeUntilStopped() }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await writeUntilStopped() }
                try? await Task.sleep(for: cancelAfter)
                group.cancelAll()
            }
        }
        return router
    }

    /// Starts StreamingOutputCall from a raw client that never reads (so never opens the
    /// window), with `timeout`; prints the first end of stream 1 it sees within `wait` seconds,
    /// and how many bytes of DATA it had received by then.
    static func neverReadingClient(port: Int, timeout: String?, wait: Int = 2) async throws -> String {
        let timeoutHeader = timeout.map { "(\"grpc-timeout\", \"\($0)\")," } ?? ""
        let script = """
        import socket, time
        import h2.config, h2.connection, h2.events
        s = socket.create_connection(("127.0.0.1", \(port)))
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                           (":path", "/grpc.testing.TestService/StreamingOutputCall"), \(timeoutHeader)
                           ("content-type", "application/grpc"), ("te", "trailers")])
        c.send_data(1, b"\\x00\\x00\\x00\\x00\\x00", end_stream=True)
        s.sendall(c.data_to_send())
        s.settimeout(0.2)
        start = time.monotonic()
        outcome = "no end of stream 1 within \(wait) s"
        received = 0
        while time.monotonic() - start < \(wait) and outcome.startswith("no end"):
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                outcome = "connection closed"
                break
            for event in c.receive_data(data):  # never acknowledged: no WINDOW_UPDATE goes out
                if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                    received += event.flow_controlled_length
                if isinstance(event, h2.events.StreamReset) and event.stream_id == 1:
                    outcome = f"reset {event.error_code}"
                elif isinstance(event, (h2.events.TrailersReceived, h2.events.ResponseReceived)) and event.stream_id == 1 \\
                        and any(k == b"grpc-status" for k, v in event.headers):
                    outcome = "status " + " ".join(v.decode() for k, v in event.headers if k == b"grpc-status")
            s.sendall(c.data_to_send())
        print(f"{outcome} after {received} bytes of DATA")
        """
        return String(decoding: try await run(projectPython, ["-c", script]), as: UTF8.self)
    }

    @Test("at the server's deadline a call whose DATA is blocked by flow control still ends")
    func deadlineWithBlockedData() async throws {
        let outcome = Shared<String?>(nil)
        let server = RPCServer(router: Self.endlessWriter(outcome: outcome))
        let port = try await server.start()
        // The deadline leaves the handler 3 s to start and fill the client's 64 KiB window: with
        // 300 ms, a loaded machine could start it late, so no DATA was pending at the deadline
        // and the call rightly ended with trailers. The client waits up to 30 s (a bound only).
        let output = try await Self.neverReadingClient(port: port, timeout: "3S", wait: 30)
        // RST_STREAM(CANCEL): the body is incomplete, so no trailers can follow it.
        #expect(output.hasPrefix("reset 8"), "\(output)")
        // And the handler's blocked write ended (the call's task was cancelled).
        let deadline = ContinuousClock.now + .seconds(30)  // a bound, not a timing requirement
        while outcome.withLock({ $0 }) == nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(outcome.withLock { $0 } != nil, "the blocked write never ended")
        await server.shutdown()
    }

    @Test("a write waiting for window ends when its task is cancelled")
    func cancelledWriterStopsWaiting() async throws {
        let outcome = Shared<String?>(nil)
        let server = RPCServer(router: Self.endlessWriter(outcome: outcome, cancelAfter: .milliseconds(300)))
        let port = try await server.start()
        // No deadline, and the client keeps the stream open: only the cancellation can end the write.
        async let client = Task.detached { try await Self.neverReadingClient(port: port, timeout: nil) }.value
        let deadline = ContinuousClock.now + .seconds(30)  // a bound, not a timing requirement
        while outcome.withLock({ $0 }) == nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let ended = outcome.withLock { $0 }
        #expect(ended?.hasPrefix("CancellationError") == true, "the write waiting for window: \(ended ?? "still waiting after 30 s")")
        _ = try await client
        await server.shutdown()
    }
}
