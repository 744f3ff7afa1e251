import ProtobufKit

/// When and how to retry a failed unary call.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included.
    public var maxAttempts = 3
    public var initialBackoff: Duration = .milliseconds(50)
    public var maxBackoff: Duration = .seconds(1)
    public var multiplier = 2.0
    /// Codes that mean "try again later": the call may not have been processed.
    public var retryableCodes: Set<RPCError.Code> = [.unavailable, .resourceExhausted, .aborted]

    public init() {}

    /// The wait before attempt `attempt` (1-based; attempt 1 is the first retry): exponential,
    /// capped, with full jitter so clients that failed together do not retry together.
    public func backoff(beforeRetry attempt: Int) -> Duration {
        let base = Double(initialBackoff.milliseconds) * pow(multiplier, Double(attempt - 1))
        let capped = min(base, Double(maxBackoff.milliseconds))
        return .milliseconds(Int64(Double.random(in: 0...capped)))
    }
}

/// Retries unary calls of idempotent methods (by their `idempotency_level`, or
/// `CallOptions.isIdempotent`) on retryable status codes. Streaming calls and non-idempotent
/// methods are never retried: a second attempt could do the work twice.
public struct RetryInterceptor: ClientInterceptor {
    public let policy: RetryPolicy
    public init(policy: RetryPolicy = RetryPolicy()) { self.policy = policy }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        let idempotent = options.isIdempotent ?? method.isIdempotent
        guard idempotent, !method.clientStreaming, !method.serverStreaming else { return try await next(options) }
        var attempt = 1
        while true {
            do {
                return try await next(options)
            } catch let error as RPCError where policy.retryableCodes.contains(error.code) && attempt < policy.maxAttempts {
                try await Task.sleep(for: policy.backoff(beforeRetry: attempt))
                attempt += 1
            }
        }
    }
}

private func pow(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    for _ in 0..<Int(exponent) { result *= base }
    return result
}
