import Foundation
import GRPCProtos
import ProtobufKit
import RPC
import Testing
import TestSupport

/// The flow-control stall counts (`FlowControlStalls`): a send that waits because its peer stopped
/// reading is counted on the writing side, with the window that stopped it. Each test gives its
/// server and client counters of their own, so tests running beside them cannot add to them.
@Suite("Flow-control stall counts", .serialized)
struct FlowControlStallTests {
    /// Polls `condition` every 20 ms until it holds or 20 s have passed; returns whether it held.
    func eventually(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    @Test("a server stream whose client stops reading is counted as a server stall on the stream window, none on the client")
    func serverStallsOnStreamWindow() async throws {
        let written = Shared(0)
        let serverStalls = FlowControlStalls(side: .server), clientStalls = FlowControlStalls(side: .client)
        let server = RPCServer(router: FlowControlTests.router(written: written), options: .defaults { $0.flowControlStalls = serverStalls })
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.flowControlStalls = clientStalls })
        let stalled = Task {
            try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                var iterator = responses.makeAsyncIterator()
                _ = try await iterator.next()
                try await Task.sleep(for: .seconds(60))  // a reader that stopped
            }
        }
        let counted = try await eventually { serverStalls.stream >= 1 }
        stalled.cancel()
        _ = await stalled.result
        await client.close()
        await server.shutdown()
        #expect(counted, "no stall counted after \(written.withLock { $0 }) messages of 16 KiB to a reader that stopped")
        // The client's 4 MiB connection window is far from used up: the stream's stopped the writer.
        #expect(serverStalls.connection == 0)
        #expect(clientStalls.stream == 0 && clientStalls.connection == 0, "the client sent one small request")
    }

    @Test("a client stream whose handler reads nothing is counted as a client stall on the stream window")
    func clientStallsOnStreamWindow() async throws {
        let serverStalls = FlowControlStalls(side: .server), clientStalls = FlowControlStalls(side: .client)
        let server = RPCServer(router: FlowControlTests.router(written: Shared(0)), options: .defaults { $0.flowControlStalls = serverStalls })
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.flowControlStalls = clientStalls })
        let upload = Task {
            _ = try await client.clientStreaming(Methods.StreamingInputCall.self) { writer in
                var request = Grpc.Testing.StreamingInputCallRequest()
                var payload = Grpc.Testing.Payload()
                payload.body = [UInt8](repeating: 2, count: 16 * 1024)
                request.payload = payload
                for _ in 0..<64 { try await writer.write(request) }  // 1 MiB to a handler that reads nothing
                try await Task.sleep(for: .seconds(60))
            }
        }
        let counted = try await eventually { clientStalls.stream >= 1 }
        upload.cancel()
        _ = await upload.result
        await client.close()
        await server.shutdown()
        #expect(counted, "no client stall counted while 1 MiB went to a handler that reads nothing")
        #expect(serverStalls.stream == 0 && serverStalls.connection == 0, "the server sent nothing but headers")
    }

    @Test("a raw HTTP/2 client with the protocol's 64 KiB connection window that reads nothing: a server stall on the connection window")
    func serverStallsOnConnectionWindow() async throws {
        let serverStalls = FlowControlStalls(side: .server)
        let server = RPCServer(router: BackpressureTests.fastWriter(counting: Shared(0)), options: .defaults { $0.flowControlStalls = serverStalls })
        let port = try await server.start()
        // Both of the peer's windows are 65,535 bytes: the connection's runs out with the stream's,
        // and the connection's is the one named (every stream would wait on it).
        // The client holds the connection, reading nothing, until the test has seen the stall (or
        // for 60 s at most), rather than for a fixed 1.5 s: on a loaded machine the handler could
        // start only after the client had gone.
        let directory = try makeTemporaryDirectory("stall")
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
        let counted = try await eventually { serverStalls.connection >= 1 }
        _ = FileManager.default.createFile(atPath: done, contents: nil)
        _ = try await client.value
        await server.shutdown()
        #expect(counted, "stream \(serverStalls.stream), connection \(serverStalls.connection)")
    }
}
