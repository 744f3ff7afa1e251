import GRPCProtos
import InteropTesting
import NIOCore
@testable import RPC
import Testing
import TestSupport

/// What a server keeps of a connection once it has closed: nothing. A connection's state holds
/// the router, so a state that outlived its connection kept every object the handlers capture
/// (a service's logic, its store, the store's open database files) for the life of the process,
/// and each connection a long-running server accepted (a health checker opens one per check)
/// added one more. Found on 2026-12-05 as some 900 descriptors of deleted SQLite files held open
/// by one test process.
@Suite("A closed connection's state is freed, on the server with everything its handlers capture, and on the client")
struct ConnectionLifetimeTests {
    /// Something a handler captures; only a live router (or connection state) keeps it.
    final class Captured: Sendable {}

    enum Handler: String, CaseIterable, Sendable {
        /// Answers without suspending (runs inline on the event loop).
        case immediate
        /// Suspends once before answering (resumes on the connection's executor).
        case suspending
    }

    @Test("after the client closed and the server shut down, nothing holds what the handler captured", arguments: Handler.allCases)
    func handlerCapturesFreed(_ handler: Handler) async throws {
        weak var captured: Captured?
        let server: RPCServer
        do {
            let object = Captured()
            captured = object
            var router = Router()
            router.unary(Methods.EmptyCall.self) { _, _ in
                _ = object
                if handler == .suspending { try await Task.sleep(for: .milliseconds(5)) }
                return Grpc.Testing.Empty()
            }
            server = RPCServer(router: router)
        }
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port)
        for _ in 0..<3 { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        await client.close()
        // The server keeps its router (and `captured`) while it runs: wait until the connection
        // is gone from it, then drop the server and see that nothing else holds the object (the
        // connection's state has a copy of the router).
        #expect(try await waitUntil { server.connectionCount == 0 }, "the server still counts the client's connection")
        await server.shutdown()
        _ = consume server
        #expect(try await waitUntil(timeout: .seconds(10)) { captured == nil },
                "a connection's state outlived the connection and the server (\(handler) handler)")
    }

    /// The client's state of one connection, taken from its pool (on the connection's loop).
    static func connectionState(of client: RPCClient) async throws -> ClientConnectionState {
        let handle = try #require(client.pool.withLock { $0.connections.values.first })
        return try await handle.channel.eventLoop.submit { handle.state.value }.get()
    }

    @Test("a client's state of a connection is freed when the client closes, and when the server closes the connection under a live client")
    func clientStateFreed() async throws {
        weak var state: ClientConnectionState?
        let server = RPCServer(router: interopTestServiceRouter())
        let port = try await server.start()
        do {
            let client = RPCClient(host: "127.0.0.1", port: port)
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
            state = try await Self.connectionState(of: client)
            await client.close()
        }
        #expect(try await waitUntil(timeout: .seconds(10)) { state == nil }, "the closed client's connection state is still alive")
        let client = RPCClient(host: "127.0.0.1", port: port)
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        state = try await Self.connectionState(of: client)
        await server.shutdown()
        #expect(try await waitUntil(timeout: .seconds(10)) { state == nil }, "a connection the server closed is still alive in the client")
        await client.close()
    }
}
