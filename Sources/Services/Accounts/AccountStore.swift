import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// Where Accounts keeps businesses, users and API keys. The service's logic sees only this
/// protocol; `SQLiteAccountStore` is the embedded default, a PostgreSQL store would be another.
public protocol AccountStore: Sendable {
    /// Inserts the account unless one with its id exists; returns the stored one and whether it is new.
    func insertAccount(_ account: AccountsV1.Account) async throws -> (account: AccountsV1.Account, created: Bool)
    /// Inserts the account and its first key in one transaction, unless an account with its id
    /// exists (then nothing is written and the stored account is returned with `created` false).
    func registerAccount(_ account: AccountsV1.Account, firstKey: AccountsV1.ApiKey, secretHash: String) async throws
        -> (account: AccountsV1.Account, created: Bool)
    func account(id: String) async throws -> AccountsV1.Account?
    /// Adds the user, or replaces the account's user with the same id (keeping its create time).
    func putUser(_ user: AccountsV1.User) async throws -> (user: AccountsV1.User, created: Bool)
    /// A user of one account (user ids are unique within an account only).
    func user(accountID: String, userID: String) async throws -> AccountsV1.User?
    func insertKey(_ key: AccountsV1.ApiKey, secretHash: String) async throws
    func key(secretHash: String) async throws -> AccountsV1.ApiKey?
    /// Marks the key revoked (once); nil if the account has no such key.
    func revokeKey(accountID: String, keyID: String, at time: Timestamp) async throws -> AccountsV1.ApiKey?
}

/// Accounts in a SQLite file: one row per entity, its protobuf encoding plus the columns queries need.
public final class SQLiteAccountStore: AccountStore {
    let database: SQLiteDatabase

    public init(path: String) throws {
        database = try SQLiteDatabase(path: path, migrations: [
            """
            CREATE TABLE accounts (account_id TEXT PRIMARY KEY, data BLOB NOT NULL);
            CREATE TABLE users (user_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(account_id), data BLOB NOT NULL);
            CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(account_id),
                                   secret_hash TEXT NOT NULL UNIQUE, data BLOB NOT NULL);
            """,
            // User ids are unique within an account, not across accounts: one business choosing
            // "u1" must neither be refused nor learn that another business has a "u1".
            """
            CREATE TABLE account_users (account_id TEXT NOT NULL REFERENCES accounts(account_id), user_id TEXT NOT NULL,
                                        data BLOB NOT NULL, PRIMARY KEY (account_id, user_id));
            INSERT INTO account_users (account_id, user_id, data) SELECT account_id, user_id, data FROM users;
            DROP TABLE users;
            """,
        ])
    }

    public func insertAccount(_ account: AccountsV1.Account) async throws -> (account: AccountsV1.Account, created: Bool) {
        try await database.write { db in
            if let row = try db.queryFirst("SELECT data FROM accounts WHERE account_id = ?", [.text(account.accountId)]) {
                return (try AccountsV1.Account(storedBytes: row.bytes(0), what: "account"), false)
            }
            try db.run("INSERT INTO accounts (account_id, data) VALUES (?, ?)", [.text(account.accountId), .blob(account.serializedBytes())])
            return (account, true)
        }
    }

    public func registerAccount(_ account: AccountsV1.Account, firstKey: AccountsV1.ApiKey, secretHash: String) async throws
        -> (account: AccountsV1.Account, created: Bool) {
        try await database.write { db in
            if let row = try db.queryFirst("SELECT data FROM accounts WHERE account_id = ?", [.text(account.accountId)]) {
                return (try AccountsV1.Account(storedBytes: row.bytes(0), what: "account"), false)
            }
            try db.run("INSERT INTO accounts (account_id, data) VALUES (?, ?)", [.text(account.accountId), .blob(account.serializedBytes())])
            try db.run("INSERT INTO api_keys (key_id, account_id, secret_hash, data) VALUES (?, ?, ?, ?)",
                       [.text(firstKey.keyId), .text(firstKey.accountId), .text(secretHash), .blob(firstKey.serializedBytes())])
            return (account, true)
        }
    }

    public func account(id: String) async throws -> AccountsV1.Account? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM accounts WHERE account_id = ?", [.text(id)]).map { try AccountsV1.Account(storedBytes: $0.bytes(0), what: "account") }
        }
    }

    public func putUser(_ user: AccountsV1.User) async throws -> (user: AccountsV1.User, created: Bool) {
        try await database.write { db in
            var user = user
            let existing = try db.queryFirst("SELECT data FROM account_users WHERE account_id = ? AND user_id = ?", [.text(user.accountId), .text(user.userId)])
            if let existing { user.createTime = try AccountsV1.User(storedBytes: existing.bytes(0), what: "user").createTime }
            try db.run("INSERT OR REPLACE INTO account_users (account_id, user_id, data) VALUES (?, ?, ?)",
                       [.text(user.accountId), .text(user.userId), .blob(user.serializedBytes())])
            return (user, existing == nil)
        }
    }

    public func user(accountID: String, userID: String) async throws -> AccountsV1.User? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM account_users WHERE account_id = ? AND user_id = ?", [.text(accountID), .text(userID)])
                .map { try AccountsV1.User(storedBytes: $0.bytes(0), what: "user") }
        }
    }

    public func insertKey(_ key: AccountsV1.ApiKey, secretHash: String) async throws {
        try await database.write { db in
            try db.run("INSERT INTO api_keys (key_id, account_id, secret_hash, data) VALUES (?, ?, ?, ?)",
                       [.text(key.keyId), .text(key.accountId), .text(secretHash), .blob(key.serializedBytes())])
        }
    }

    public func key(secretHash: String) async throws -> AccountsV1.ApiKey? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM api_keys WHERE secret_hash = ?", [.text(secretHash)]).map { try AccountsV1.ApiKey(storedBytes: $0.bytes(0), what: "API key") }
        }
    }

    public func revokeKey(accountID: String, keyID: String, at time: Timestamp) async throws -> AccountsV1.ApiKey? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT data FROM api_keys WHERE key_id = ? AND account_id = ?", [.text(keyID), .text(accountID)]) else { return nil }
            var key = try AccountsV1.ApiKey(storedBytes: row.bytes(0), what: "API key")
            guard key.status != .revoked else { return key }
            key.status = .revoked
            key.revokeTime = time
            try db.run("UPDATE api_keys SET data = ? WHERE key_id = ?", [.blob(key.serializedBytes()), .text(keyID)])
            return key
        }
    }
}
