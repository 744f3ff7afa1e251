import DroneDeliveryAPI
import Foundation
import RPC
import Synchronization

/// Who called: the account and key an API key belongs to, and what the key may do.
public struct Caller: Sendable, Hashable {
    public var accountID: String
    public var keyID: String
    /// The key's role (ADMIN for keys from before roles existed).
    public var role: AccountsV1.ApiKeyRole = .admin
    /// A tracking token's one delivery; empty for other keys.
    public var deliveryScope: String = ""
    /// The user of the account the key acts for; empty for the account as a whole.
    public var userID: String = ""

    public init(accountID: String, keyID: String, role: AccountsV1.ApiKeyRole = .admin, deliveryScope: String = "", userID: String = "") {
        self.accountID = accountID
        self.keyID = keyID
        self.role = role
        self.deliveryScope = deliveryScope
        self.userID = userID
    }
}

/// Validates API keys with Accounts and caches the answers for a short time (valid and invalid
/// alike, so a flood of bad keys does not reach Accounts). Concurrent requests with a key that is
/// not cached share one validation: when an entry expires under load, Accounts gets one call for
/// it, not one per request in flight.
final class APIKeyAuthenticator: Sendable {
    private typealias Validation = Task<Caller?, any Error>
    private enum Entry {
        case known(caller: Caller?, expires: Double)
        /// `token` tells this validation from a later one for the same key.
        case validating(Validation, token: UInt64)
    }
    private enum Lookup {
        case cached(Caller?)
        case wait(Validation)
    }

    private let upstreams: UpstreamPool
    private let maxCacheSeconds: Double
    private let cache = Mutex([String: Entry]())

    init(upstreams: UpstreamPool, maxCacheSeconds: Double) {
        self.upstreams = upstreams
        self.maxCacheSeconds = maxCacheSeconds
    }

    /// The caller for a secret whose validation is cached and valid; nil otherwise (unknown,
    /// being validated, expired from the cache, or invalid). Costs no call.
    func cachedCaller(_ secret: String) -> Caller? {
        let now = Date().timeIntervalSince1970
        return cache.withLock { cache in
            if case .known(let caller?, let expires)? = cache[secret], expires > now { return caller }
            return nil
        }
    }

    /// The caller for a secret, nil when the key is unknown, revoked, expired or its account inactive.
    func authenticate(_ secret: String) async throws -> Caller? {
        let now = Date().timeIntervalSince1970
        let lookup: Lookup = cache.withLock { cache in
            switch cache[secret] {
            case .known(let caller, let expires)? where expires > now:
                return .cached(caller)
            case .validating(let running, _)?:
                return .wait(running)
            default:
                if cache.count > 10_000 {
                    // Forget answers, not validations in flight (their waiters would start new ones).
                    cache = cache.filter { if case .validating = $0.value { true } else { false } }
                }
                let token = UInt64.random(in: .min ... .max)
                let started = Validation { try await self.validate(secret, token: token) }
                cache[secret] = .validating(started, token: token)
                return .wait(started)
            }
        }
        switch lookup {
        case .cached(let caller): return caller
        case .wait(let validation): return try await validation.value
        }
    }

    private func validate(_ secret: String, token: UInt64) async throws -> Caller? {
        // The outcome replaces this validation's entry only (a purge may have made way for another).
        func settle(_ entry: Entry?) {
            cache.withLock { cache in
                if case .validating(_, token)? = cache[secret] { cache[secret] = entry }
            }
        }
        var request = AccountsV1.ValidateApiKeyRequest()
        request.secret = secret
        let accounts = AccountsV1.AccountsService.Client(upstreams.client("accounts")!)
        do {
            let answer = try await accounts.validateApiKey(request, options: CallOptions(timeout: .seconds(3), isIdempotent: true))
            let caller = answer.valid ? Caller(accountID: answer.accountId, keyID: answer.keyId, role: answer.role == .unspecified ? .admin : answer.role,
                                               deliveryScope: answer.deliveryId, userID: answer.userId) : nil
            let lifetime = min(maxCacheSeconds, answer.cacheTtl.map { Double($0.seconds) + Double($0.nanos) / 1e9 } ?? maxCacheSeconds)
            settle(.known(caller: caller, expires: Date().timeIntervalSince1970 + lifetime))
            return caller
        } catch {
            settle(nil)  // not cached: the next request asks again
            throw error
        }
    }
}

/// Token buckets per key (an API key id, or a client address): `rate` tokens a second up to
/// `burst`. At most `maxBuckets` are kept: past that, buckets that have refilled (which hold
/// nothing a new bucket would not) are forgotten, so a flood of distinct keys cannot grow it.
final class RateLimiter: Sendable {
    private let rate: Double
    private let burst: Double
    private let maxBuckets = 100_000
    private let buckets = Mutex([String: (tokens: Double, updated: Double)]())

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Nil if `key`'s bucket has a token now (without taking it); otherwise the seconds until it will.
    func wait(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        buckets.withLock { buckets in
            guard let bucket = buckets[key] else { return nil }
            let tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            return tokens >= 1 ? nil : (1 - tokens) / rate
        }
    }

    /// Nil if the request may go ahead; otherwise the seconds until it could.
    func take(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        buckets.withLock { buckets in
            if buckets.count >= maxBuckets, buckets[key] == nil {
                buckets = buckets.filter { $0.value.tokens + (now - $0.value.updated) * rate < burst }
            }
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
