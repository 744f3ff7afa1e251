import GRPCProtos
import InteropTesting
import ProtobufKit
import RPC
import Synchronization
import Testing

/// Rejects calls without the right `authorization` metadata.
struct TokenCheck: ServerInterceptor {
    func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        guard context.metadata["authorization"] == "Bearer drone-key" else {
            throw RPCError(.unauthenticated, "missing or wrong API key")
        }
        try await next(context)
    }
}

/// Adds the token to every call.
struct TokenAdder: ClientInterceptor {
    func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        var options = options
        options.metadata.add("authorization", "Bearer drone-key")
        try await next(options)
    }
}

@Suite("Interceptors and deadline propagation", .serialized)
struct InterceptorTests {
    @Test("a server interceptor authenticates; a client interceptor adds the credential")
    func authentication() async throws {
        let server = RPCServer(router: interopTestServiceRouter(), options: .defaults { $0.interceptors = [TokenCheck()] })
        let port = try await server.start()
        let anonymous = RPCClient(host: "127.0.0.1", port: port)
        let error = await #expect(throws: RPCError.self) { _ = try await anonymous.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        #expect(error?.code == .unauthenticated)
        let authenticated = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.interceptors = [TokenAdder()] })
        _ = try await authenticated.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        await anonymous.close()
        await authenticated.close()
        await server.shutdown()
    }

    @Test("a deadline set by the first caller bounds the next hop")
    func deadlinePropagation() async throws {
        // Backend: records the deadline it was given.
        let seen = Mutex<Duration?>(nil)
        var backendRouter = Router()
        backendRouter.unary(Methods.EmptyCall.self) { request, context in
            seen.withLock { $0 = context.deadline.map { $0 - .now } }
            return request
        }
        let backend = RPCServer(router: backendRouter)
        let backendPort = try await backend.start()
        let toBackend = RPCClient(host: "127.0.0.1", port: backendPort)

        // Frontend: calls the backend without a timeout of its own.
        var frontendRouter = Router()
        frontendRouter.unary(Methods.EmptyCall.self) { request, _ in
            try await toBackend.unary(Methods.EmptyCall.self, request)
        }
        let frontend = RPCServer(router: frontendRouter)
        let frontendPort = try await frontend.start()
        let client = RPCClient(host: "127.0.0.1", port: frontendPort)
        // 60 s: long enough that a loaded machine (twelve tests at once on two cores) cannot use it
        // up before the backend sees the call; the backend's deadline must still be within it.
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(60)))
        let remaining = try #require(seen.withLock { $0 })
        #expect(remaining > .zero && remaining <= .seconds(60))
        await client.close()
        await toBackend.close()
        await frontend.shutdown()
        await backend.shutdown()
    }
}
