import CoreMetrics
import ProtobufKit
import Synchronization

/// Per-method call metrics through swift-metrics, named as go-grpc-prometheus names them (what
/// Prometheus users of gRPC already have dashboards and alerts for):
///
/// - `grpc_<side>_started_total{grpc_type, grpc_service, grpc_method}`
/// - `grpc_<side>_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`
/// - `grpc_<side>_handling_seconds{grpc_type, grpc_service, grpc_method}` (a histogram)
/// - `grpc_<side>_in_flight{grpc_type, grpc_service, grpc_method}` (a gauge)
///
/// where `<side>` is `server` or `client`. The metric objects of a method are made once, on its
/// first call, and kept: a call costs a dictionary lookup under a lock plus the increments.
public final class RPCMetrics: Sendable {
    /// Which end of the calls these metrics count.
    public enum Side: String, Sendable { case server, client }

    /// The histogram's name for a side (for configuring its buckets).
    public static func handlingSecondsLabel(_ side: Side) -> String { "grpc_\(side.rawValue)_handling_seconds" }

    /// Buckets for call durations, from 100 µs (a unary call on one host) to 30 s (a stream).
    public static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// `durationBuckets` in seconds: the buckets of `grpc_<side>_handling_seconds`.
    public static let durationBucketSeconds: [Double] = durationBuckets.map { Double($0.nanosecondsClamped) / 1e9 }

    /// A status code as grpc-go spells it (`codes.Code.String()`), which the go-grpc-prometheus
    /// dashboards match on: `OK`, `NotFound`, `Unavailable`, ...
    public static func codeLabel(_ code: RPCError.Code) -> String {
        codeLabels.indices.contains(code.rawValue) ? codeLabels[code.rawValue] : "Code(\(code.rawValue))"
    }

    static let codeLabels = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
                             "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
                             "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"]

    let side: Side
    private let methods = Mutex<[String: MethodMetrics]>([:])

    public init(side: Side) { self.side = side }

    /// One method's metric objects.
    final class MethodMetrics: Sendable {
        let dimensions: [(String, String)]
        let started: Counter
        let inFlight: Meter
        /// The call's duration in seconds, as a histogram of `Double`s (an aggregating recorder,
        /// whose buckets `durationBucketSeconds` are): the Prometheus backend's histogram
        /// compares a value with every bucket, and as a `Timer` each comparison was one of
        /// `Duration`'s 128-bit ones, most of what recording a call's time cost. The factory's
        /// handler itself, not a `Recorder`: its `record`, generic over the value's type, was
        /// not specialized, and converted every value through the generic path.
        let handlingTime: any RecorderHandler
        let handledPrefix: String
        /// `handled_total{grpc_code="OK"}`, made with the others: most calls end OK, and the
        /// look-up under a lock that other codes take was a measurable part of a counted call.
        let handledOK: Counter
        /// `handled_total` per status code other than OK, made on the code's first use.
        let handled = Mutex<[Int: Counter]>([:])

        init(side: Side, method: MethodDescriptor) {
            let type = switch (method.clientStreaming, method.serverStreaming) {
            case (false, false): "unary"
            case (false, true): "server_stream"
            case (true, false): "client_stream"
            case (true, true): "bidi_stream"
            }
            dimensions = [("grpc_type", type), ("grpc_service", method.service), ("grpc_method", method.name)]
            handledPrefix = "grpc_\(side.rawValue)_handled_total"
            started = Counter(label: "grpc_\(side.rawValue)_started_total", dimensions: dimensions)
            inFlight = Meter(label: "grpc_\(side.rawValue)_in_flight", dimensions: dimensions)
            handlingTime = MetricsSystem.factory.makeRecorder(label: RPCMetrics.handlingSecondsLabel(side), dimensions: dimensions, aggregate: true)
            handledOK = Counter(label: handledPrefix, dimensions: dimensions + [("grpc_code", RPCMetrics.codeLabel(.ok))])
        }

        func handled(_ code: RPCError.Code) -> Counter {
            if code == .ok { return handledOK }
            return handled.withLock { counters in
                if let counter = counters[code.rawValue] { return counter }
                let counter = Counter(label: handledPrefix, dimensions: dimensions + [("grpc_code", RPCMetrics.codeLabel(code))])
                counters[code.rawValue] = counter
                return counter
            }
        }
    }

    func metrics(for method: MethodDescriptor) -> MethodMetrics {
        methods.withLock { methods in
            if let existing = methods[method.path] { return existing }
            let made = MethodMetrics(side: side, method: method)
            methods[method.path] = made
            return made
        }
    }

    /// Counts one call around `body`: started, in flight while it runs, then handled with its
    /// status code (OK, the `RPCError`'s code, or UNKNOWN for any other error) and its duration.
    func measure(_ method: MethodDescriptor, _ body: () async throws -> Void) async throws {
        let metrics = metrics(for: method)
        let start = metrics.begin()
        do {
            try await body()
            metrics.end(.ok, since: start)
        } catch {
            metrics.end((error as? RPCError)?.code ?? (error is CancellationError ? .cancelled : .unknown), since: start)
            throw error
        }
    }
}

extension RPCMetrics.MethodMetrics {
    /// A call of this method started (now, or at `start`, when the caller read `CallClock`
    /// already): counted, and in flight until `end`.
    func begin(at start: UInt64? = nil) -> UInt64 {
        started.increment()
        inFlight.increment()
        return start ?? CallClock.nanoseconds()
    }

    /// The call that `begin` returned `start` for ended with `code`.
    func end(_ code: RPCError.Code, since start: UInt64) {
        inFlight.decrement()
        handlingTime.record(Double(CallClock.nanoseconds() &- start) / 1e9)
        handled(code).increment()
    }
}

/// Counts every call a server handles (`RPCMetrics`, side `server`). Put it outside the
/// interceptors that can refuse a call, so refused calls are counted with their code.
/// `RPCServer.Options.metrics` counts the same, in the server's own call path, for less: no
/// async frame of its own per call, and each method's metric objects found without a look-up.
public struct MetricsServerInterceptor: ServerInterceptor {
    let metrics: RPCMetrics
    public init(metrics: RPCMetrics = RPCMetrics(side: .server)) { self.metrics = metrics }

    public func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        try await metrics.measure(context.method) { try await next(context) }
    }
}

/// Counts every call a client makes (`RPCMetrics`, side `client`). Put it outside a retrying
/// interceptor to count calls, inside it to count attempts.
public struct MetricsClientInterceptor: ClientInterceptor {
    let metrics: RPCMetrics
    public init(metrics: RPCMetrics = RPCMetrics(side: .client)) { self.metrics = metrics }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        try await metrics.measure(method) { try await next(options) }
    }
}
