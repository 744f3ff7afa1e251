/// The engine-neutral storage interface every store is written against. Two engines implement
/// it: `SQLiteDatabase` (the embedded default, one file, one writer) and `PostgresDatabase`
/// (module StoragePostgres, a pool of libpq connections). Stores write portable SQL with `?`
/// placeholders (`INSERT … ON CONFLICT`, `RETURNING`; never `INSERT OR REPLACE`) and give each
/// engine its own DDL (`DatabaseSchema`).

/// The open transaction a `write` or `read` closure runs in. Used on the engine's own thread,
/// only for the length of the closure.
public protocol SQLTransaction: AnyObject {
    /// Which engine this is, for the few statements that differ.
    var dialect: Dialect { get }
    /// Runs a statement with parameters (`?` in order); returns the number of rows it changed.
    @discardableResult func run(_ sql: String, _ parameters: [SQLValue]) throws -> Int
    /// Runs a query (or a statement with `RETURNING`) and returns every row.
    func query(_ sql: String, _ parameters: [SQLValue]) throws -> [Row]
    /// Serializes this transaction with every other one that locks `key`, until it ends (for a
    /// key known only once the closure has read something; prefer `write(locking:)`).
    /// SQLite: nothing to do (one writer per file). PostgreSQL: a transaction advisory lock.
    func lock(_ key: String) throws
}

extension SQLTransaction {
    @discardableResult
    public func run(_ sql: String) throws -> Int { try run(sql, []) }
    public func query(_ sql: String) throws -> [Row] { try query(sql, []) }
    /// The first row of a query, if any.
    public func queryFirst(_ sql: String, _ parameters: [SQLValue] = []) throws -> Row? { try query(sql, parameters).first }
}

/// What differs between the engines inside otherwise portable SQL.
public struct Dialect: Sendable, Hashable {
    public enum Engine: String, Sendable { case sqlite, postgres }
    public let engine: Engine
    /// Appended to a SELECT that reads a row the transaction will then change: `FOR UPDATE` in
    /// PostgreSQL (the row stays locked until the transaction ends), nothing in SQLite (a write
    /// transaction already holds the file's one write lock).
    public var forUpdate: String { engine == .postgres ? " FOR UPDATE" : "" }
    /// Appended to a SELECT that picks rows to claim: `FOR UPDATE SKIP LOCKED` in PostgreSQL, so
    /// two claimers at once take different rows instead of waiting for each other; nothing in
    /// SQLite (its one writer runs the claiming statements one after the other).
    public var skipLocked: String { engine == .postgres ? " FOR UPDATE SKIP LOCKED" : "" }
    /// The database's clock as seconds since 1970 (a SQL expression). Claims and leases expire by
    /// it, so replicas whose own clocks disagree still agree on who holds what.
    public var epochNow: String {
        engine == .postgres ? "EXTRACT(EPOCH FROM clock_timestamp())::double precision" : "((julianday('now') - 2440587.5) * 86400.0)"
    }

    public static let sqlite = Dialect(engine: .sqlite)
    public static let postgres = Dialect(engine: .postgres)
}

/// A store's schema steps, per engine (DDL differs: BLOB/bytea, REAL/double precision,
/// AUTOINCREMENT/identity). Each list is applied in order, once, at open; the lists are
/// versioned separately (SQLite: `PRAGMA user_version`; PostgreSQL: `schema_migrations`).
public struct DatabaseSchema: Sendable {
    public var sqlite: [String]
    public var postgres: [String]
    public init(sqlite: [String], postgres: [String]) {
        self.sqlite = sqlite
        self.postgres = postgres
    }
}

/// A database: runs synchronous transaction closures on a thread of its own (never on an event
/// loop or Swift's cooperative pool) and returns once the outcome is known. Stores call the
/// `write` and `read` of the extension below; engines implement `transaction` and `snapshot`
/// (different names, so the SQLite engine's own `write`/`read` over `SQLiteConnection`, used by
/// the broker, never compete with these in overload resolution).
public protocol SQLDatabase: Sendable {
    var dialect: Dialect { get }
    /// Runs `body` in a write transaction and returns once it is durable. A throwing body leaves
    /// nothing behind. `keys`: names this write must hold alone for its whole length (a
    /// read-modify-write of one entity that may not exist yet). PostgreSQL takes them as
    /// transaction advisory locks, in sorted order, before `body` runs; SQLite has one writer.
    func transaction<T: Sendable>(locking keys: [String], _ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T
    /// Runs `body` on a consistent snapshot, without blocking writers.
    func snapshot<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T
}

extension SQLDatabase {
    /// A write that holds `keys` alone (see `transaction(locking:_:)`).
    @discardableResult
    public func write<T: Sendable>(locking keys: [String], _ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await transaction(locking: keys, body)
    }

    /// A write that needs no lock besides the rows it touches.
    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await transaction(locking: [], body)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await snapshot(body)
    }

    /// The rows of `SELECT <integer column>, COUNT(*) ... GROUP BY <that column>` as a map from
    /// the column's value to its count (for metrics: deliveries per stage, drones per status).
    public func groupCounts(_ sql: String) async throws -> [Int64: Int] {
        try await snapshot { db in
            var counts: [Int64: Int] = [:]
            for row in try db.query(sql) { counts[row.int(0)] = Int(row.int(1)) }
            return counts
        }
    }
}

/// Where a store's database lives: opens it with the store's schema brought up to date.
/// `SQLiteLocation` (a file) is here; `PostgresLocation` is in StoragePostgres.
public protocol DatabaseLocation: Sendable {
    /// Opens the database and applies the steps of `schema` it does not have yet. Blocking
    /// (connections, migrations): call it at start, or from a thread of its own.
    func open(_ schema: DatabaseSchema) throws -> any SQLDatabase
}

/// A SQLite file.
public struct SQLiteLocation: DatabaseLocation {
    public let path: String
    public init(path: String) { self.path = path }
    public func open(_ schema: DatabaseSchema) throws -> any SQLDatabase {
        try SQLiteDatabase(path: path, migrations: schema.sqlite)
    }
}

/// A storage failure that is not about the SQL itself, the same for every engine.
public struct StorageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// The store could not serve now (a lost connection, a closed pool), rather than refusing
    /// what it was asked (see `StorageFailure`).
    public let isUnavailable: Bool
    public init(_ description: String, unavailable: Bool = false) {
        self.description = description
        self.isUnavailable = unavailable
    }
}
