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
        /// Whether the client sends a stream. A method taking one request starts its handler only
        /// once the request has fully arrived, so the handler never waits for it (and a unary
        /// call that does not suspend runs start to finish in one event-loop turn).
        let requestStreaming: Bool
        let run: @Sendable (ServerCall) async throws -> Void
        /// The method's call metrics, when the server counts calls (`RPCServer.Options.metrics`).
        var metrics: RPCMetrics.MethodMetrics?
    }

    var methods: [String: Method] = [:]

    public init() {}

    /// Paths of every registered method.
    public var paths: [String] { methods.keys.sorted() }

    /// The same methods, each with its call metrics in `metrics` (made now, so every method's
    /// series exist from the start, at zero).
    func counting(with metrics: RPCMetrics) -> Router {
        var counted = self
        for (path, method) in methods { counted.methods[path]?.metrics = metrics.metrics(for: method.descriptor) }
        return counted
    }

    /// Fully qualified names of the services with at least one registered method.
    public var serviceNames: [String] { Array(Set(methods.values.map(\.descriptor.service))).sorted() }

    /// One request, one response.
    public mutating func unary<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (M.Input, ServerContext) async throws -> M.Output) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor, requestStreaming: false) { call in
            let request = try await call.singleRequest(M.Input.self)
            let response = try await handler(request, call.context)
            try await call.send(response)
        }
    }

    /// One request, a stream of responses.
    public mutating func serverStreaming<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (M.Input, ResponseWriter<M.Output>, ServerContext) async throws -> Void) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor, requestStreaming: false) { call in
            let request = try await call.singleRequest(M.Input.self)
            try await handler(request, ResponseWriter(call: call), call.context)
        }
    }

    /// A stream of requests, one response.
    public mutating func clientStreaming<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (RequestStream<M.Input>, ServerContext) async throws -> M.Output) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor, requestStreaming: true) { call in
            let response = try await handler(RequestStream(call: call), call.context)
            try await call.send(response)
        }
    }

    /// Streams both ways.
    public mutating func bidirectional<M: MethodSpec>(_ method: M.Type, _ handler: @escaping @Sendable (RequestStream<M.Input>, ResponseWriter<M.Output>, ServerContext) async throws -> Void) {
        methods[M.descriptor.path] = Method(descriptor: M.descriptor, requestStreaming: true) { call in
            try await handler(RequestStream(call: call), ResponseWriter(call: call), call.context)
        }
    }
}
