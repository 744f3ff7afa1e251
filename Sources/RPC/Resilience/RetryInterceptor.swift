import ProtobufKit
import Synchronization

/// When and how to retry a failed unary call.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included.
    public var maxAttempts = 3
    public var initialBackoff: Duration = .milliseconds(50)
    public var maxBackoff: Duration = .seconds(1)
    public var multiplier = 2.0
    /// Codes that mean "try again later": the call may not have been processed.
    public var retryableCodes: Set<RPCError.Code> = [.unavailable, .resourceExhausted, .aborted]
    /// Stops retrying while most calls fail (gRPC A6's throttling), so that a struggling server
    /// is not sent several times its normal load; nil never throttles.
    public var throttling: RetryThrottling? = RetryThrottling()
    /// No retry starts with less than this left of the call's deadline (an attempt that short
    /// would most likely end in DEADLINE_EXCEEDED, hiding the failure seen).
    public var minimumAttemptTime: Duration = .zero

    public init() {}

    /// The wait before attempt `attempt` (1-based; attempt 1 is the first retry): exponential,
    /// capped, with full jitter so clients that failed together do not retry together.
    public func backoff(beforeRetry attempt: Int) -> Duration {
        let base = Double(initialBackoff.milliseconds) * pow(multiplier, Double(attempt - 1))
        let capped = min(base, Double(maxBackoff.milliseconds))
        return .milliseconds(Int64(Double.random(in: 0...capped)))
    }
}

/// Retry throttling as gRPC's retry design (A6) defines it: a token bucket per client that starts
/// full at `maxTokens`. Each attempt that fails with a retryable code takes a token; each call
/// that succeeds gives back `tokenRatio` of one (up to `maxTokens`). Retries are allowed only
/// while more than half the tokens are left: when failures dominate, each call is tried once.
public struct RetryThrottling: Sendable, Hashable {
    public var maxTokens: Double = 10
    public var tokenRatio: Double = 0.1

    public init(maxTokens: Double = 10, tokenRatio: Double = 0.1) {
        self.maxTokens = maxTokens
        self.tokenRatio = tokenRatio
    }
}

/// The token bucket of `RetryThrottling`: a value type fed with outcomes, tested on its own.
struct RetryTokenBucket: Sendable {
    let throttling: RetryThrottling
    private(set) var tokens: Double

    init(_ throttling: RetryThrottling) {
        self.throttling = throttling
        self.tokens = throttling.maxTokens
    }

    mutating func recordFailure() { tokens = max(tokens - 1, 0) }
    mutating func recordSuccess() { tokens = min(tokens + throttling.tokenRatio, throttling.maxTokens) }
    var allowsRetry: Bool { tokens > throttling.maxTokens / 2 }
}

/// Retries unary calls of idempotent methods (by their `idempotency_level`, or
/// `CallOptions.isIdempotent`) on retryable status codes. Streaming calls and non-idempotent
/// methods are never retried: a second attempt could do the work twice. Errors the client made
/// itself (`RPCError.isLocal`) are never retried: they would recur.
///
/// Retries stay within the call's deadline: each attempt gets the time that is left, and no
/// retry starts that could not finish in it. The server may ask for a delay, or for no retry,
/// with `grpc-retry-pushback-ms` in its trailers (A6).
///
/// Throttling (`RetryPolicy.throttling`) counts the outcomes of every call through this
/// interceptor: give each client its own `RetryInterceptor`, so that one server's failures do
/// not stop retries to another.
public struct RetryInterceptor: ClientInterceptor {
    public let policy: RetryPolicy
    let bucket: Bucket?

    /// The shared, mutable token bucket of one interceptor (and so of one client).
    final class Bucket: Sendable {
        let state: Mutex<RetryTokenBucket>
        init(_ throttling: RetryThrottling) { state = Mutex(RetryTokenBucket(throttling)) }
    }

    public init(policy: RetryPolicy = RetryPolicy()) {
        self.policy = policy
        self.bucket = policy.throttling.map(Bucket.init)
    }

    /// Tokens left in the throttling bucket (nil without throttling).
    public var throttlingTokens: Double? { bucket?.state.withLock { $0.tokens } }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        let retrying = (options.isIdempotent ?? method.isIdempotent) && !method.clientStreaming && !method.serverStreaming
        guard retrying else { return try await observed(next, options) }
        let deadline = try RPCClient.deadline(options)
        var attemptOptions = options
        var attempt = 1
        while true {
            do {
                return try await observed(next, attemptOptions)
            } catch let error as RPCError where policy.retryableCodes.contains(error.code) && !error.isLocal && attempt < policy.maxAttempts {
                guard bucket?.state.withLock({ $0.allowsRetry }) ?? true else { throw error }
                let wait: Duration
                switch Pushback(error) {
                case .absent: wait = policy.backoff(beforeRetry: attempt)
                case .delay(let delay): wait = delay
                case .stop: throw error
                }
                if let deadline {
                    // Sleeping past the deadline would only end in DEADLINE_EXCEEDED: the
                    // failure seen is the more useful answer.
                    let remaining = deadline - .now - wait
                    guard remaining > .zero, remaining >= policy.minimumAttemptTime else { throw error }
                    try await Task.sleep(for: wait)
                    attemptOptions.timeout = deadline - .now
                } else {
                    try await Task.sleep(for: wait)
                }
                attempt += 1
            }
        }
    }

    /// Runs one attempt and feeds its outcome to the throttling bucket.
    @inline(__always)
    private func observed(_ next: (CallOptions) async throws -> Void, _ options: CallOptions) async throws {
        guard let bucket else { return try await next(options) }
        do {
            try await next(options)
            bucket.state.withLock { $0.recordSuccess() }
        } catch let error as RPCError {
            if policy.retryableCodes.contains(error.code) && !error.isLocal { bucket.state.withLock { $0.recordFailure() } }
            throw error
        }
    }

}

/// The server's `grpc-retry-pushback-ms` trailer (A6): a delay to wait instead of the backoff,
/// or, when negative or not a number, a request not to retry.
enum Pushback {
    case absent, stop
    case delay(Duration)

    init(_ error: RPCError) {
        guard let value = error.metadata["grpc-retry-pushback-ms"] else { self = .absent; return }
        guard let milliseconds = Int64(value), milliseconds >= 0 else { self = .stop; return }
        self = .delay(.milliseconds(milliseconds))
    }
}

private func pow(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    for _ in 0..<Int(exponent) { result *= base }
    return result
}
