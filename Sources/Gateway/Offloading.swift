import DroneDeliveryAPI
import Foundation
import RPC
import Synchronization

/// Who called: the account and key an API key belongs to.
public struct Caller: Sendable, Hashable {
    public var accountID: String
    public var keyID: String
}

/// Validates API keys with Accounts and caches the answers for a short time (valid and invalid
/// alike, so a flood of bad keys does not reach Accounts).
final class APIKeyAuthenticator: Sendable {
    private let upstreams: UpstreamPool
    private let maxCacheSeconds: Double
    private let cache = Mutex([String: (caller: Caller?, expires: Double)]())

    init(upstreams: UpstreamPool, maxCacheSeconds: Double) {
        self.upstreams = upstreams
        self.maxCacheSeconds = maxCacheSeconds
    }

    /// The caller for a secret, nil when the key is unknown, revoked, expired or its account inactive.
    func authenticate(_ secret: String) async throws -> Caller? {
        let now = Date().timeIntervalSince1970
        if let cached = cache.withLock({ $0[secret] }), cached.expires > now { return cached.caller }
        var request = AccountsV1.ValidateApiKeyRequest()
        request.secret = secret
        let accounts = AccountsV1.AccountsService.Client(upstreams.client("accounts")!)
        let answer = try await accounts.validateApiKey(request, options: CallOptions(timeout: .seconds(3), isIdempotent: true))
        let caller = answer.valid ? Caller(accountID: answer.accountId, keyID: answer.keyId) : nil
        let lifetime = min(maxCacheSeconds, answer.cacheTtl.map { Double($0.seconds) + Double($0.nanos) / 1e9 } ?? maxCacheSeconds)
        cache.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[secret] = (caller, now + lifetime)
        }
        return caller
    }
}

/// Token buckets per API key: `rate` tokens a second up to `burst`.
final class RateLimiter: Sendable {
    private let rate: Double
    private let burst: Double
    private let buckets = Mutex([String: (tokens: Double, updated: Double)]())

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Nil if the request may go ahead; otherwise the seconds until it could.
    func take(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? (burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / rate
        }
    }
}
