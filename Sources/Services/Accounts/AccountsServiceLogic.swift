import Foundation
import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit

/// Accounts: businesses register, add users, and get API keys the gateway validates here.
/// Secrets are shown once, when issued; only their SHA-256 is stored. Every key has a role
/// (admin, deliveries, read-only, or a tracking token for one delivery) that the gateway enforces.
public struct AccountsServiceLogic: AccountsV1.AccountsService.Handler {
    let store: any AccountStore
    /// How long the gateway may cache a validation answer.
    public var validationCacheTTL = Google.Protobuf.Duration(seconds: 30)
    /// A tracking token's lifetime when the request names none, and the longest allowed.
    public static let defaultTrackingTTL = 7 * 24 * 3600.0
    public static let maxTrackingTTL = 30 * 24 * 3600.0

    public init(store: any AccountStore) { self.store = store }

    public func registerAccount(_ request: AccountsV1.RegisterAccountRequest, context: ServerContext) async throws -> AccountsV1.RegisterAccountResponse {
        // Checked against accounts.proto's field rules before this runs: a display name with
        // a non-space character, a contact e-mail address, a request id of at most 128 bytes.
        var account = AccountsV1.Account()
        // A caller-chosen request id makes registration idempotent: the same id, the same account.
        account.accountId = request.requestId.isEmpty ? makeID("acct") : "acct-" + String(SHA256.hex("register:" + request.requestId).prefix(16))
        account.name = "accounts/\(account.accountId)"
        account.displayName = request.displayName
        account.contactEmail = request.contactEmail
        account.status = .active
        account.createTime = .now
        account.updateTime = account.createTime
        // The business's first key, stored with the account in one transaction, so an account
        // never exists without a way in.
        let (key, secret) = Self.newKey(accountID: account.accountId, role: .admin, displayName: "first admin key (registration)")
        let stored = try await store.registerAccount(account, firstKey: key, secretHash: SHA256.hex(secret))
        if !stored.created, stored.account.displayName != request.displayName || stored.account.contactEmail != request.contactEmail {
            // The same idempotency key with another request is a client error, not the first answer.
            throw RPCError(.alreadyExists, "request_id \(request.requestId) was already used to register a different account")
        }
        var response = AccountsV1.RegisterAccountResponse()
        response.account = stored.account
        response.created = stored.created
        if stored.created {
            var adminKey = AccountsV1.IssueApiKeyResponse()
            adminKey.apiKey = key
            adminKey.secret = secret
            response.adminKey = adminKey
        }
        return response
    }

    public func getAccount(_ request: AccountsV1.GetAccountRequest, context: ServerContext) async throws -> AccountsV1.Account {
        // `name` matches ^accounts/[^/]+$ (its field rule).
        return try await existingAccount(String(request.name.dropFirst("accounts/".count)))
    }

    public func addUser(_ request: AccountsV1.AddUserRequest, context: ServerContext) async throws -> AccountsV1.AddUserResponse {
        // account_id, user, user.display_name are required and user.email is an e-mail address
        // or empty (field rules).
        guard var user = request.user else { throw RPCError(.invalidArgument, "user is required") }
        _ = try await existingAccount(request.accountId)
        if user.userId.isEmpty { user.userId = makeID("user") }
        user.accountId = request.accountId
        if user.role == .unspecified { user.role = .member }
        user.createTime = .now
        let stored = try await store.putUser(user)
        var response = AccountsV1.AddUserResponse()
        response.user = stored.user
        response.created = stored.created
        return response
    }

    public func issueApiKey(_ request: AccountsV1.IssueApiKeyRequest, context: ServerContext) async throws -> AccountsV1.IssueApiKeyResponse {
        let account = try await existingAccount(request.accountId)
        guard account.status == .active else { throw RPCError(.failedPrecondition, "account \(account.accountId) is not active") }
        // A positive ttl, and a defined role other than TRACKING (tracking keys come from
        // CreateTrackingLink): field rules.
        let role: AccountsV1.ApiKeyRole = request.role == .unspecified ? .deliveries : request.role
        if !request.userId.isEmpty, try await store.user(accountID: account.accountId, userID: request.userId) == nil {
            throw RPCError(.notFound, "account \(account.accountId) has no user \(request.userId)")
        }
        var (key, secret) = Self.newKey(accountID: account.accountId, role: role, displayName: request.displayName)
        key.userId = request.userId
        if let ttl = request.ttl { key.expireTime = Timestamp(secondsSince1970: key.createTime!.secondsSince1970 + ttl.totalSeconds) }
        try await store.insertKey(key, secretHash: SHA256.hex(secret))
        var response = AccountsV1.IssueApiKeyResponse()
        response.apiKey = key
        response.secret = secret
        return response
    }

    public func createTrackingLink(_ request: AccountsV1.CreateTrackingLinkRequest, context: ServerContext) async throws -> AccountsV1.CreateTrackingLinkResponse {
        // delivery_id is required and a ttl lies in (0, 30 days] (`maxTrackingTTL`): field rules.
        let account = try await existingAccount(request.accountId)
        guard account.status == .active else { throw RPCError(.failedPrecondition, "account \(account.accountId) is not active") }
        var (key, token) = Self.newKey(accountID: account.accountId, role: .tracking, displayName: "tracking link for \(request.deliveryId)")
        key.deliveryId = request.deliveryId
        key.expireTime = Timestamp(secondsSince1970: key.createTime!.secondsSince1970 + (request.ttl?.totalSeconds ?? Self.defaultTrackingTTL))
        try await store.insertKey(key, secretHash: SHA256.hex(token))
        var response = AccountsV1.CreateTrackingLinkResponse()
        response.apiKey = key
        response.token = token
        response.trackingPath = "/track#delivery=\(Self.fragmentEscaped(request.deliveryId))&token=\(token)"
        return response
    }

    public func revokeApiKey(_ request: AccountsV1.RevokeApiKeyRequest, context: ServerContext) async throws -> AccountsV1.ApiKey {
        guard let key = try await store.revokeKey(accountID: request.accountId, keyID: request.keyId, at: .now) else {
            throw RPCError(.notFound, "account \(request.accountId) has no API key \(request.keyId)")
        }
        return key
    }

    public func validateApiKey(_ request: AccountsV1.ValidateApiKeyRequest, context: ServerContext) async throws -> AccountsV1.ValidateApiKeyResponse {
        var response = AccountsV1.ValidateApiKeyResponse()
        response.cacheTtl = validationCacheTTL
        guard !request.secret.isEmpty, let key = try await store.key(secretHash: SHA256.hex(request.secret)) else { return response }
        response.keyId = key.keyId
        response.accountId = key.accountId
        response.keyStatus = key.status
        // Keys from before roles existed could do everything.
        response.role = key.role == .unspecified ? .admin : key.role
        response.deliveryId = key.deliveryId
        response.userId = key.userId
        if key.status == .active, let expire = key.expireTime, expire.secondsSince1970 <= Timestamp.now.secondsSince1970 {
            response.keyStatus = .expired
        }
        let account = try await store.account(id: key.accountId)
        response.accountStatus = account?.status ?? .unspecified
        response.valid = response.keyStatus == .active && response.accountStatus == .active
        return response
    }

    /// Creates the account with a fixed id if it does not exist (the local demo's business).
    public func seedAccount(id: String, displayName: String) async throws {
        var account = AccountsV1.Account()
        account.accountId = id
        account.name = "accounts/\(id)"
        account.displayName = displayName
        account.contactEmail = "demo@example.com"
        account.status = .active
        account.createTime = .now
        account.updateTime = account.createTime
        _ = try await store.insertAccount(account)
    }

    /// Gives the account an API key with a known secret if it has none with that secret (the
    /// local demo's key; never set in a real deployment). Replicas starting together may all
    /// seed it: one inserts, the others find it inserted (a unique violation stopped the second
    /// replica before). If `key-demo` exists with another secret, that is an error.
    public func seedAPIKey(accountID: String, secret: String) async throws {
        guard try await store.key(secretHash: SHA256.hex(secret)) == nil else { return }
        var key = AccountsV1.ApiKey()
        key.keyId = "key-demo"
        key.accountId = accountID
        key.displayName = "local demo key"
        key.secretPrefix = String(secret.prefix(8))
        key.status = .active
        key.role = .admin
        key.createTime = .now
        if try await store.insertKeyIfAbsent(key, secretHash: SHA256.hex(secret)) { return }
        guard try await store.key(secretHash: SHA256.hex(secret)) != nil else {
            throw ConfigurationError("the seeded API key \(key.keyId) exists with another secret than --seed-api-key")
        }
    }

    /// A new active key of `role` for the account, and its secret (shown once, stored as a hash).
    static func newKey(accountID: String, role: AccountsV1.ApiKeyRole, displayName: String) -> (AccountsV1.ApiKey, secret: String) {
        let secret = "fdk_" + randomHex(bytes: 24)
        var key = AccountsV1.ApiKey()
        key.keyId = makeID("key")
        key.accountId = accountID
        key.displayName = displayName
        key.secretPrefix = String(secret.prefix(8))
        key.status = .active
        key.role = role
        key.createTime = .now
        return (key, secret)
    }

    /// A value for the tracking page's fragment (`#delivery=...`): percent-encoded except
    /// unreserved characters.
    static func fragmentEscaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? text
    }

    private func existingAccount(_ id: String) async throws -> AccountsV1.Account {
        guard let account = try await store.account(id: id) else { throw RPCError(.notFound, "account \(id) does not exist") }
        return account
    }
}
