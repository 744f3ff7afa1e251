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
            let caller = answer.valid ? Caller(accountID: answer.accountId, keyID: answer.keyId) : nil
            let lifetime = min(maxCacheSeconds, answer.cacheTtl.map { Double($0.seconds) + Double($0.nanos) / 1e9 } ?? maxCacheSeconds)
            settle(.known(caller: caller, expires: Date().timeIntervalSince1970 + lifetime))
            return caller
        } catch {
            settle(nil)  // not cached: the next request asks again
            throw error
        }
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
