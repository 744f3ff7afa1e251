import RPC

/// Finds the caller from the API key (`Authorization: Bearer` or `X-API-Key`), validated by
/// Accounts and cached: 401 without a valid key, except on public routes.
///
/// Requests without a valid key (public routes, no key, a key that fails) cost their client
/// address a token of the anonymous rate limit: 429 once it is spent. A key not cached yet is
/// validated only while the address has tokens left, so neither a flood of registrations nor
/// guessing keys reaches Accounts faster than the limit; a valid key costs nothing.
struct AuthenticationMiddleware: GatewayMiddleware {
    let authenticator: APIKeyAuthenticator
    let anonymousLimiter: RateLimiter
    let anonymousLimit: GatewayConfiguration.RateLimit
    let plans: [RoutePlan]

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        if case .route(let route, _) = context.target, plans[route.id].access == .public {
            try takeAnonymousToken(context.request)
            return nil
        }
        guard let secret = Self.apiKey(context.request) else {
            try takeAnonymousToken(context.request)
            var error = GatewayError(401, 16, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
            error.headers = [("www-authenticate", "Bearer")]
            throw error
        }
        if let known = authenticator.cachedCaller(secret) {
            context.caller = known
            return nil
        }
        if let wait = anonymousLimiter.wait(context.request.clientAddress) { throw tooManyRequests(context.request, wait: wait) }
        let found: Caller?
        do {
            found = try await authenticator.authenticate(secret)
        } catch let error as RPCError {
            throw GatewayError(503, 14, "cannot validate the API key now (accounts: \(error.code)); try again")
        }
        guard let found else {
            try takeAnonymousToken(context.request)
            var error = GatewayError(401, 16, "the API key is not valid (unknown, revoked, expired, or its account is not active)")
            error.headers = [("www-authenticate", "Bearer error=\"invalid_token\"")]
            throw error
        }
        context.caller = found
        return nil
    }

    private func takeAnonymousToken(_ request: GatewayRequest) throws {
        if let wait = anonymousLimiter.take(request.clientAddress) { throw tooManyRequests(request, wait: wait) }
    }

    private func tooManyRequests(_ request: GatewayRequest, wait: Double) -> GatewayError {
        var error = GatewayError(429, 8, "too many requests without a valid API key from \(request.clientAddress) "
                                 + "(limit \(anonymousLimit.requestsPerSecond)/s); try again later")
        error.headers = [("retry-after", String(Int(wait.rounded(.up))))]
        return error
    }

    /// The key a request carries: `Authorization: Bearer <key>` (any case), else `X-API-Key`.
    static func apiKey(_ request: GatewayRequest) -> String? {
        if let authorization = request.header("authorization") {
            let bytes = authorization.utf8
            // "Bearer " in any case (ASCII case folding on the bytes), then the key.
            if bytes.count > 7, zip(bytes.prefix(7), "bearer ".utf8).allSatisfy({ $0 | 0x20 == $1 }) {
                let key = bytes.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
                return String(Substring(key))
            }
        }
        return request.header("x-api-key")
    }
}
