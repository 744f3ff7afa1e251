import ProtobufKit
import RPC

/// Retries an upstream call the gateway may safely repeat when it fails with UNAVAILABLE: a
/// replica that stopped or could not be reached, which the next attempt (the next address, the
/// RPC client round-robins) may not be. Safe means a unary call marked idempotent: every call a
/// GET makes (`CallOptionsMiddleware`), API-key validation, and methods whose
/// `idempotency_level` says so. Any other call is answered as it failed (a create that timed
/// out may have been done).
///
/// Unlike `RetryInterceptor`, every attempt keeps to the request's one deadline: a retry gets
/// what is left of the first attempt's timeout, and none starts once too little is left.
struct UpstreamRetryInterceptor: ClientInterceptor {
    var policy: RetryPolicy = {
        var policy = RetryPolicy()
        policy.maxAttempts = 3
        policy.initialBackoff = .milliseconds(20)
        policy.maxBackoff = .milliseconds(200)
        policy.retryableCodes = [.unavailable]
        return policy
    }()
    /// No retry starts with less than this left of the deadline.
    var minimumAttempt: Duration = .milliseconds(100)

    func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        let idempotent = options.isIdempotent ?? method.isIdempotent
        guard idempotent, !method.clientStreaming, !method.serverStreaming else { return try await next(options) }
        let deadline = options.timeout.map { ContinuousClock.now + $0 }
        var attempt = 1
        var options = options
        while true {
            do {
                return try await next(options)
            } catch let error as RPCError where policy.retryableCodes.contains(error.code) && attempt < policy.maxAttempts {
                let backoff = policy.backoff(beforeRetry: attempt)
                if let deadline {
                    let left = deadline - ContinuousClock.now - backoff
                    guard left >= minimumAttempt else { throw error }
                    options.timeout = left
                }
                try await Task.sleep(for: backoff)
                attempt += 1
            }
        }
    }
}
