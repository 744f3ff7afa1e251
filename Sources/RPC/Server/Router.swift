import ProtobufKit

/// The methods a server serves, by path. Built with typed registrations:
///
/// ```swift
/// var router = Router()
/// router.unary(Grpc.Testing.TestService.Method.UnaryCall.self) { request, context in
///     var response = Grpc.Testing.SimpleResponse()
///     ...
///     return response
/// }
/// ```
public struct Router: Sendable {
    struct Method: Sendable {
        let descriptor: MethodDescriptor
        let run: @Sendable (ServerCall) async throws -> Void
    }

    var methods: [String: Method] = [:]

    public init() {}

    /// Paths of every registered method.
    public var paths: [String] { methods.keys.sorted() }

    /// Fully qualified names of the services with at least one registered method.
    public var serviceNames: [String] { Array(Set(methods.values.map(\.descriptor.service))).sorted() }

    /// One request, one response.
    public mutating func unary<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (M.Input, ServerContext) async throws -> M.Output) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor) { call in
            let request = try await Self.single(RequestStream<M.Input>(call: call))
            let response = try await handler(request, call.context)
            try await call.send(response.serializedBytes())
        }
    }

    /// One request, a stream of responses.
    public mutating func serverStreaming<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (M.Input, ResponseWriter<M.Output>, ServerContext) async throws -> Void) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor) { call in
            let request = try await Self.single(RequestStream<M.Input>(call: call))
            try await handler(request, ResponseWriter(call: call), call.context)
        }
    }

    /// A stream of requests, one response.
    public mutating func clientStreaming<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (RequestStream<M.Input>, ServerContext) async throws -> M.Output) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor) { call in
            let response = try await handler(RequestStream(call: call), call.context)
            try await call.send(response.serializedBytes())
        }
    }

    /// Streams both ways.
    public mutating func bidirectional<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (RequestStream<M.Input>, ResponseWriter<M.Output>, ServerContext) async throws -> Void) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor) { call in
            try await handler(RequestStream(call: call), ResponseWriter(call: call), call.context)
        }
    }

    /// Exactly one request message, as unary and server-streaming calls require.
    static func single<Input>(_ requests: RequestStream<Input>) async throws -> Input {
        var iterator = requests.makeAsyncIterator()
        guard let request = try await iterator.next() else {
            throw RPCError(.internal, "the client sent no request message")
        }
        guard try await iterator.next() == nil else {
            throw RPCError(.internal, "the client sent more than one request message to a unary method")
        }
        return request
    }
}
