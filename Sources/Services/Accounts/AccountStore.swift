import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// Where Accounts keeps businesses, users and API keys. The service's logic sees only this
/// protocol; `SQLAccountStore` keeps them in a SQLite file (the default) or a PostgreSQL schema.
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
    /// Inserts the key unless a key with its id (or secret) exists; true if this call inserted it (two
    /// replicas seeding the same key at once: one inserts, the other is told it did not).
    func insertKeyIfAbsent(_ key: AccountsV1.ApiKey, secretHash: String) async throws -> Bool
    func key(secretHash: String) async throws -> AccountsV1.ApiKey?
    /// Marks the key revoked (once); nil if the account has no such key.
    func revokeKey(accountID: String, keyID: String, at time: Timestamp) async throws -> AccountsV1.ApiKey?
}

/// Accounts in a SQL database (SQLite file or a PostgreSQL schema): one row per entity, its
/// protobuf encoding plus the columns queries need.
public final class SQLAccountStore: AccountStore {
    let database: any SQLDatabase

    public static let schema = DatabaseSchema(sqlite: [
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
    ], postgres: [
        """
        CREATE TABLE accounts (account_id TEXT PRIMARY KEY, data BYTEA NOT NULL);
        CREATE TABLE account_users (account_id TEXT NOT NULL REFERENCES accounts(account_id), user_id TEXT NOT NULL,
                                    data BYTEA NOT NULL, PRIMARY KEY (account_id, user_id));
        CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(account_id),
                               secret_hash TEXT NOT NULL UNIQUE, data BYTEA NOT NULL);
        """,
    ])

    /// Opens the store where `location` says (blocking: call at start or off the cooperative pool).
    public init(_ location: any DatabaseLocation) throws {
        database = try location.open(Self.schema)
    }

    /// The embedded default: a SQLite file.
    public convenience init(path: String) throws {
        try self.init(SQLiteLocation(path: path))
    }

    /// Inserts the account unless its id exists (two replicas seeding the same account at once:
    /// one inserts, the other reads what it inserted); true if this call inserted it.
    static func insertIfAbsent(_ account: AccountsV1.Account, _ db: any SQLTransaction) throws -> Bool {
        try db.run("INSERT INTO accounts (account_id, data) VALUES (?, ?) ON CONFLICT (account_id) DO NOTHING",
                   [.text(account.accountId), .blob(account.serializedBytes())]) == 1
    }

    static func storedAccount(_ id: String, _ db: any SQLTransaction) throws -> AccountsV1.Account {
        guard let row = try db.queryFirst("SELECT data FROM accounts WHERE account_id = ?", [.text(id)]) else {
            throw StorageError("account \(id) vanished while it was being read")
        }
        return try AccountsV1.Account(storedBytes: row.bytes(0), what: "account")
    }

    public func insertAccount(_ account: AccountsV1.Account) async throws -> (account: AccountsV1.Account, created: Bool) {
        try await database.write { db in
            if try Self.insertIfAbsent(account, db) { return (account, true) }
            return (try Self.storedAccount(account.accountId, db), false)
        }
    }

    public func registerAccount(_ account: AccountsV1.Account, firstKey: AccountsV1.ApiKey, secretHash: String) async throws
        -> (account: AccountsV1.Account, created: Bool) {
        try await database.write { db in
            guard try Self.insertIfAbsent(account, db) else { return (try Self.storedAccount(account.accountId, db), false) }
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
        try await database.write(locking: ["user:\(user.accountId)/\(user.userId)"]) { db in
            var user = user
            let existing = try db.queryFirst("SELECT data FROM account_users WHERE account_id = ? AND user_id = ?", [.text(user.accountId), .text(user.userId)])
            if let existing { user.createTime = try AccountsV1.User(storedBytes: existing.bytes(0), what: "user").createTime }
            try db.run("""
                INSERT INTO account_users (account_id, user_id, data) VALUES (?, ?, ?)
                ON CONFLICT (account_id, user_id) DO UPDATE SET data = excluded.data
                """, [.text(user.accountId), .text(user.userId), .blob(user.serializedBytes())])
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

    public func insertKeyIfAbsent(_ key: AccountsV1.ApiKey, secretHash: String) async throws -> Bool {
        try await database.write { db in
            try db.run("INSERT INTO api_keys (key_id, account_id, secret_hash, data) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       [.text(key.keyId), .text(key.accountId), .text(secretHash), .blob(key.serializedBytes())]) == 1
        }
    }

    public func key(secretHash: String) async throws -> AccountsV1.ApiKey? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM api_keys WHERE secret_hash = ?", [.text(secretHash)]).map { try AccountsV1.ApiKey(storedBytes: $0.bytes(0), what: "API key") }
        }
    }

    public func revokeKey(accountID: String, keyID: String, at time: Timestamp) async throws -> AccountsV1.ApiKey? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT data FROM api_keys WHERE key_id = ? AND account_id = ?" + db.dialect.forUpdate,
                                              [.text(keyID), .text(accountID)]) else { return nil }
            var key = try AccountsV1.ApiKey(storedBytes: row.bytes(0), what: "API key")
            guard key.status != .revoked else { return key }
            key.status = .revoked
            key.revokeTime = time
            try db.run("UPDATE api_keys SET data = ? WHERE key_id = ?", [.blob(key.serializedBytes()), .text(keyID)])
            return key
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteAccountStore = SQLAccountStore
