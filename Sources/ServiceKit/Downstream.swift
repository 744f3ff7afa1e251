import RPC

/// How one service calls another: one client per downstream with its own circuit breaker and
/// bulkhead (so a slow or dead dependency cannot take every caller's capacity), retries with
/// jittered exponential backoff for idempotent calls, and the current trace on every call.
public struct Downstream: Sendable {
    public let name: String
    public let client: RPCClient
    public let breaker: CircuitBreaker
    public let bulkhead: Bulkhead

    /// - Parameters:
    ///   - maxConcurrent: the bulkhead: calls in flight to this downstream at once.
    ///   - retry: retries inside one call (short; longer waits belong to the caller, e.g. a saga),
    ///     throttled per downstream (`RetryPolicy.throttling`): while most calls to it fail, each
    ///     is tried once, so a struggling service is not sent its callers' retries on top.
    public init(name: String, host: String, port: Int, maxConcurrent: Int = 64,
                retry: RetryPolicy = RetryPolicy(), breaker: CircuitBreaker.Configuration = .init()) {
        self.name = name
        let circuitBreaker = CircuitBreaker(name: name, configuration: breaker)
        let bulkhead = Bulkhead(name: name, maxConcurrent: maxConcurrent, maxQueued: maxConcurrent * 16)
        self.breaker = circuitBreaker
        self.bulkhead = bulkhead
        self.client = RPCClient(host: host, port: port, options: .defaults {
            // Outermost first: metrics and the breaker see one outcome per call (after retries); the bulkhead
            // holds a slot for the whole call; the trace goes on every attempt.
            let counted: [any ClientInterceptor] = MetricsEndpoint.isEnabled ? [MetricsClientInterceptor(metrics: Downstream.metrics)] : []
            $0.interceptors = counted + [CircuitBreakerInterceptor(circuitBreaker), BulkheadInterceptor(bulkhead), RetryInterceptor(policy: retry), TracingClientInterceptor()]
            $0.connectTimeout = .seconds(2)
            // FABRIKAM_TLS_CA (and FABRIKAM_TLS_CLIENT_CERT/KEY for mutual TLS): calls over TLS.
            $0.tls = TLSEnvironment.current?.client
        })
    }

    public func close() async { await client.close() }

    /// Client-side call metrics of every downstream of this process (outermost: one per call,
    /// after retries, with the code its caller saw).
    static let metrics = RPCMetrics(side: .client)
}

extension CallOptions {
    /// Options for a call that is safe to repeat (it carries an idempotency key), with a timeout.
    public static func idempotent(timeout: Duration = .seconds(5)) -> CallOptions {
        CallOptions(timeout: timeout, isIdempotent: true)
    }
}

extension RPCError.Code {
    /// Codes after which the same call may succeed later: retry them. Everything else is a
    /// definite answer (bad input, not found, refused) and retrying would not change it.
    public var isTransient: Bool {
        [.unavailable, .deadlineExceeded, .resourceExhausted, .aborted, .internal, .unknown, .cancelled].contains(self)
    }
}
