import Logging
import ProtobufKit

/// Runs around every call a server handles: logging, metrics, tracing and authentication live
/// here, not in handlers. Call `next` to continue (possibly with a changed context); throw an
/// `RPCError` to end the call without running the handler.
public protocol ServerInterceptor: Sendable {
    func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws
}

/// Runs around every call a client makes: it may change the options (add metadata such as a
/// token or a trace id), observe the outcome, or call `next` again to retry.
public protocol ClientInterceptor: Sendable {
    func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws
}

/// The deadline of the call being handled, so calls a handler makes onward inherit it.
public enum CallDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?
}

/// Logs each call's method, status and duration with swift-log (debug for OK, info otherwise).
public struct LoggingServerInterceptor: ServerInterceptor {
    let logger: Logger
    public init(logger: Logger) { self.logger = logger }

    public func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        let start = context.startNanoseconds
        do {
            try await next(context)
            // Built only when it will be written: at the usual level an OK call logs nothing.
            if logger.logLevel <= .debug {
                logger.debug("call", metadata: metadata(context, status: "OK", since: start))
            }
        } catch {
            let status = (error as? RPCError)?.code ?? .unknown
            logger.info("call failed", metadata: metadata(context, status: "\(status)", since: start))
            throw error
        }
    }

    private func metadata(_ context: ServerContext, status: String, since start: UInt64) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["rpc.method": "\(context.method.path)", "net.peer": "\(context.peer)", "rpc.status": "\(status)",
                                         "duration_ms": "\((CallClock.nanoseconds() &- start) / 1_000_000)"]
        if let trace = context.metadata["traceparent"] { metadata["trace.parent"] = "\(trace)" }
        return metadata
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Runs `body` through `interceptors`, outermost first. Walks the array by index: slicing off
/// the rest at each level allocated an array per interceptor per call.
func runServerInterceptors(_ interceptors: [any ServerInterceptor], _ context: ServerContext, from index: Int = 0,
                           _ body: (ServerContext) async throws -> Void) async throws {
    guard index < interceptors.endIndex else { return try await body(context) }
    try await interceptors[index].intercept(context) { context in
        try await runServerInterceptors(interceptors, context, from: index + 1, body)
    }
}

func runClientInterceptors(_ interceptors: [any ClientInterceptor], _ method: MethodDescriptor, _ options: CallOptions,
                           from index: Int = 0, _ body: (CallOptions) async throws -> Void) async throws {
    guard index < interceptors.endIndex else { return try await body(options) }
    try await interceptors[index].intercept(method, options: options) { options in
        try await runClientInterceptors(interceptors, method, options, from: index + 1, body)
    }
}
