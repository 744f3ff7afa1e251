/// Token-bucket rate limit per API key: 429 with `Retry-After` when a key's bucket is empty.
struct RateLimitMiddleware: GatewayMiddleware {
    let limiter: RateLimiter
    let limit: GatewayConfiguration.RateLimit

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        if let caller = context.caller, let wait = limiter.take(caller.keyID) {
            var error = GatewayError(429, 8, "rate limit of \(limit.requestsPerSecond) requests/s for this key exceeded")
            error.headers = [("retry-after", String(Int(wait.rounded(.up))))]
            throw error
        }
        return nil
    }
}
