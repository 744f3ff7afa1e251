import Foundation
import Storage
import Synchronization

/// A PostgreSQL database seen through a pool of libpq connections, one service's schema of it.
///
/// - Every connection has a thread of its own that makes the blocking libpq calls, so none runs
///   on an event loop or Swift's cooperative pool. A transaction goes to whichever connection is
///   free next; `poolSize` (configuration) bounds how many run at once.
/// - `write` runs its closure in a READ COMMITTED transaction and returns after COMMIT
///   (`synchronous_commit` on: durable). Keys named in `write(locking:)` are taken first, sorted,
///   as transaction advisory locks, so two writers of one entity (two replicas) run one after the
///   other and two writers of several keys cannot deadlock over their order. A serialization
///   failure or deadlock (40001, 40P01) reruns the closure, up to three times; a connection lost
///   before COMMIT was sent reconnects and reruns it once; lost during COMMIT, the outcome is
///   unknown and the caller hears so.
/// - `read` runs its closure in a REPEATABLE READ, READ ONLY transaction: one snapshot; a
///   connection found lost reconnects and the read runs again once.
/// - The schema is brought up to date when the database is opened: the steps not yet recorded in
///   the schema's `schema_migrations` table run in one transaction under an advisory lock, so
///   replicas starting at once apply each step exactly once.
/// - Unlike the SQLite engine there is no group commit: each closure is its own transaction.
public final class PostgresDatabase: SQLDatabase {
    public let schema: String
    public var dialect: Dialect { .postgres }
    private let pool: Pool
    private let threads: Int

    /// Opens `poolSize` connections to `url` (a libpq connection string or URI), creates
    /// `schema` if needed, applies `migrations` and sets every connection's search_path to it.
    /// `password`, when given, is sent beside `url` instead of inside it (see `PostgresLocation`).
    public init(url: String, schema: String, poolSize: Int = 4, password: String? = nil, migrations: [String]) throws {
        try Self.checkIdentifier(schema)
        self.schema = schema
        let setup = ["SET search_path TO \(schema)"]
        try Self.migrate(try PostgresConnection(conninfo: url, password: password), schema: schema, steps: migrations)
        var connections: [PostgresConnection] = []
        for _ in 0..<max(poolSize, 1) { connections.append(try PostgresConnection(conninfo: url, password: password, setup: setup)) }
        pool = Pool()
        threads = connections.count
        for (index, connection) in connections.enumerated() {
            let owned = Owned(connection)
            let pool = self.pool
            let thread = Thread {
                let connection = owned.value
                while let job = pool.next() { job.run(connection) }
            }
            thread.name = "postgres:\(schema):\(index)"
            thread.start()
        }
    }

    deinit { pool.close(threads: threads) }

    public func transaction<T: Sendable>(locking keys: [String], _ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await submit { connection in try Self.runWrite(connection, keys: keys, body) }
    }

    public func snapshot<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await submit { connection in
            // BEGIN inside the retry: a connection the server dropped (restarted), or one whose
            // reconnect failed while the server was down, is reconnected here, as writes do;
            // with BEGIN outside it every later read on that connection failed for good.
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    let value = try body(connection)
                    try connection.execute("COMMIT")
                    return value
                } catch {
                    if connection.isBroken {
                        // Read only: running it again on the new connection is safe.
                        if connection.reconnect() && attempt < 2 { continue }
                        throw error
                    }
                    _ = try? connection.execute("ROLLBACK")
                    // As writes do (`isRetryable`): e.g. a prepared statement the session lost,
                    // prepared again on the rerun.
                    if let failure = error as? PostgresError, failure.isRetryable, attempt < 3 { continue }
                    throw error
                }
            }
        }
    }

    private func submit<T: Sendable>(_ work: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job { connection in continuation.resume(with: Result { try work(connection) }) }
            if !pool.submit(job) { continuation.resume(throwing: StorageError("the PostgreSQL pool of schema \(schema) is closed", unavailable: true)) }
        }
    }

    private static func runWrite<T>(_ connection: PostgresConnection, keys: [String], _ body: (any SQLTransaction) throws -> T) throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            var committing = false
            do {
                try connection.execute("BEGIN")
                for key in Set(keys).sorted() { try connection.lock(key) }
                let value = try body(connection)
                committing = true
                // A transaction that hit an error the closure swallowed is aborted: COMMIT answers ROLLBACK.
                if try connection.execute("COMMIT") != "COMMIT" {
                    throw PostgresError(sqlState: "25P02", message: "the transaction was aborted by an earlier error; nothing was committed", sql: "COMMIT")
                }
                return value
            } catch {
                if connection.isBroken {
                    let reconnected = connection.reconnect()
                    if committing {
                        throw StorageError("the connection to PostgreSQL was lost during COMMIT: the outcome is unknown (\(error))", unavailable: true)
                    }
                    if reconnected && attempt < 2 { continue }
                    throw error
                }
                if !committing { _ = try? connection.execute("ROLLBACK") }
                if let failure = error as? PostgresError, failure.isRetryable, attempt < 3 { continue }
                throw error
            }
        }
    }

    /// Creates the schema and its `schema_migrations` table if missing, then applies the steps
    /// past the highest recorded version, all in one transaction under an advisory lock.
    static func migrate(_ connection: PostgresConnection, schema: String, steps: [String]) throws {
        try connection.execute("BEGIN")
        do {
            try connection.lock("fabrikam.migrate:" + schema)
            try connection.execute("""
                CREATE SCHEMA IF NOT EXISTS \(schema);
                CREATE TABLE IF NOT EXISTS \(schema).schema_migrations (version BIGINT PRIMARY KEY,
                                                                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                SET LOCAL search_path TO \(schema);
                """)
            let version = Int(try connection.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", []).first?.int(0) ?? 0)
            for (index, step) in steps.enumerated() where index >= version {
                try connection.execute(step)
                try connection.run("INSERT INTO schema_migrations (version) VALUES (?)", [.int(index + 1)])
            }
            try connection.execute("COMMIT")
        } catch {
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
    }

    /// Runs statements on a connection of their own and closes it (administration: dropping a
    /// test's schema). Blocking.
    public static func execute(url: String, _ sql: String) throws {
        try PostgresConnection(conninfo: url).execute(sql)
    }

    /// Nil when a fresh connection to `url` answers a query; otherwise what went wrong (waiting
    /// for a server to start; a service's health uses a `PostgresProbe`). Blocking.
    public static func problem(url: String, password: String? = nil) -> String? {
        do {
            _ = try PostgresConnection(conninfo: url, password: password).query("SELECT 1", [])
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Schema names are written into SQL, so only plain lower-case identifiers are accepted.
    static func checkIdentifier(_ name: String) throws {
        let valid = !name.isEmpty && name.utf8.count < 64 && name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
            && !(name.utf8.first.map { $0 >= 48 && $0 <= 57 } ?? true)
        guard valid else { throw StorageError("PostgreSQL schema name \"\(name)\" must be lower-case letters, digits and _") }
    }
}

/// A service's schema in a PostgreSQL database, for `DatabaseLocation`.
public struct PostgresLocation: DatabaseLocation {
    public let url: String
    public let schema: String
    public let poolSize: Int
    /// The password, kept out of `url` (which is logged, redacted): from a mounted Secret file
    /// (`Configuration.secret("store-password")`). Nil: libpq's PGPASSWORD / PGPASSFILE, if any.
    let password: String?
    public init(url: String, schema: String, poolSize: Int = 4, password: String? = nil) {
        self.url = url
        self.schema = schema
        self.poolSize = poolSize
        self.password = password
    }
    public func open(_ schema: DatabaseSchema) throws -> any SQLDatabase {
        try PostgresDatabase(url: url, schema: self.schema, poolSize: poolSize, password: password, migrations: schema.postgres)
    }
}

/// A transaction waiting for a connection.
private struct Job: @unchecked Sendable {
    let run: (PostgresConnection) -> Void
}

/// A connection handed to the thread that will own it.
private final class Owned: @unchecked Sendable {
    let value: PostgresConnection
    init(_ value: PostgresConnection) { self.value = value }
}

/// The jobs waiting for a connection; the pool's threads take them first come, first served.
private final class Pool: Sendable {
    private let state = Mutex<(jobs: [Job], head: Int, closed: Bool)>(([], 0, false))
    private let waiting = DispatchSemaphore(value: 0)

    func submit(_ job: Job) -> Bool {
        let accepted = state.withLock { state -> Bool in
            if state.closed { return false }
            state.jobs.append(job)
            return true
        }
        if accepted { waiting.signal() }
        return accepted
    }

    /// The next job, waiting for one; nil once the pool is closed and drained.
    func next() -> Job? {
        waiting.wait()
        return state.withLock { state -> Job? in
            guard state.head < state.jobs.count else { return nil }
            let job = state.jobs[state.head]
            state.head += 1
            if state.head > 64 && state.head * 2 > state.jobs.count {
                state.jobs.removeFirst(state.head)
                state.head = 0
            }
            return job
        }
    }

    func close(threads: Int) {
        state.withLock { $0.closed = true }
        for _ in 0..<threads { waiting.signal() }
    }
}

/// A service's health check of its PostgreSQL server: one connection of its own, kept from one
/// probe to the next, and a query on it. A fresh connection per probe (as at first) made every
/// process with a store start a server backend every two seconds, eight a second on the
/// two-replica system: a fork, authentication and a catalog cache each time, for an answer
/// the kept connection gives. A kept connection that fails is replaced at once, so a backend
/// that was terminated or a connection that broke is not reported as the server's problem; the
/// problem is what a fresh connection meets. TCP's user timeout bounds a probe that meets a
/// server that went silent (no reset, no answer) to seconds rather than TCP's minutes.
/// The connection says `application_name` = `fabrikam-probe: <name>` in `pg_stat_activity`.
public final class PostgresProbe: Sendable {
    public let url: String
    private let password: String?
    private let parameters: [(String, String)]
    private let kept = Mutex<PostgresConnection?>(nil)

    /// `name`: the store's, for `application_name`. `silenceTimeout`: how long sent data may go
    /// unacknowledged before the connection counts as broken (libpq's `tcp_user_timeout`).
    public init(url: String, password: String? = nil, name: String, silenceTimeout: Duration = .seconds(5)) {
        self.url = url
        self.password = password
        let milliseconds = silenceTimeout.components.seconds * 1000 + silenceTimeout.components.attoseconds / 1_000_000_000_000_000
        parameters = [("application_name", String(decoding: "fabrikam-probe: \(name)".utf8.prefix(63), as: UTF8.self)), ("tcp_user_timeout", "\(milliseconds)"),
                      ("connect_timeout", "\(max(2, milliseconds / 1000))")]
    }

    /// Nil when the server answers a query; otherwise what went wrong. Blocking.
    public func problem() -> String? {
        kept.withLock { connection -> String? in
            if let existing = connection {
                if (try? existing.query("SELECT 1", [])) != nil { return nil }
                connection = nil  // broken, or its backend was ended: a fresh one decides
            }
            do {
                let fresh = try PostgresConnection(conninfo: url, password: password, parameters: parameters)
                _ = try fresh.query("SELECT 1", [])
                connection = fresh
                return nil
            } catch {
                return "\(error)"
            }
        }
    }
}
