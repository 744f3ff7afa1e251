import RPC

extension RetryPolicy {
    /// How the gateway retries an upstream call it may safely repeat when it fails with
    /// UNAVAILABLE: a replica that stopped or could not be reached, which the next attempt (the
    /// RPC client round-robins to the next address) may not be. Safe means a unary call marked
    /// idempotent: every call a GET makes (`CallOptionsMiddleware`), API-key validation, and
    /// methods whose `idempotency_level` says so; any other call is answered as it failed (a
    /// create that timed out may have been done). Every attempt keeps to the request's one
    /// deadline (`RetryInterceptor`), and none starts with less than 100 ms left. No throttling:
    /// the public request's own rate limits bound the load.
    static let gatewayUpstream: RetryPolicy = {
        var policy = RetryPolicy()
        policy.maxAttempts = 3
        policy.initialBackoff = .milliseconds(20)
        policy.maxBackoff = .milliseconds(200)
        policy.retryableCodes = [.unavailable]
        policy.minimumAttemptTime = .milliseconds(100)
        policy.throttling = nil
        return policy
    }()
}
