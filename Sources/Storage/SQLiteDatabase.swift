import CSQLite
import Dispatch
import Synchronization

/// A SQLite database file, the embedded default store of every service.
///
/// - WAL mode with `synchronous=FULL`: a committed transaction is on disk (fsync'd) before
///   `write` returns, and readers in other processes never block the writer.
/// - One connection, confined to a private serial queue, so SQLite calls never run on an event
///   loop or a cooperative-pool thread.
/// - Group commit: writes that arrive while a commit is in progress are batched into the next
///   transaction, each inside its own SAVEPOINT, so one failing closure rolls back alone and
///   many concurrent callers share one fsync. This is what makes durable ingestion fast.
///   Every caller learns what happened to its own closure: committed, rolled back alone, or not
///   committed because the commit failed. When a failure makes SQLite end the whole transaction
///   (a full disk, `RAISE(ROLLBACK)`), the closures that shared it are run again in a new one;
///   a closure cannot begin or end a transaction itself (refused, SQLITE_AUTH).
/// - `busy_timeout` lets several processes share a file (the embedded message broker).
public final class SQLiteDatabase: SQLDatabase {
    /// The file this database lives in.
    public let path: String

    private let queue: DispatchQueue
    private nonisolated(unsafe) let connection: SQLiteConnection  // touched only on `queue`
    private let pending = Mutex(PendingJobs())

    private struct PendingJobs {
        var jobs: [Job] = []
        var draining = false
    }

    /// A closure waiting to run, and how to tell its caller the outcome once the batch commits.
    private struct Job: @unchecked Sendable {
        let isWrite: Bool
        /// Runs on the database queue; returns whether it succeeded and how to report the outcome
        /// once the transaction's own outcome (commit or rollback) is known.
        let execute: (SQLiteConnection) -> (succeeded: Bool, finish: (SQLiteError?) -> Void)
        /// Reports a failure without running the closure (the transaction could not begin).
        let fail: (SQLiteError) -> Void
    }

    /// Opens (or creates) the file and brings its schema up to date.
    ///
    /// - Parameter migrations: schema steps in order; the ones past the file's `user_version`
    ///   run in one transaction, so a schema is never half-applied.
    public init(path: String, migrations: [String]) throws {
        self.path = path
        self.queue = DispatchQueue(label: "sqlite:\(path)")
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA busy_timeout = 10000")
        try connection.execute("PRAGMA journal_mode = WAL")
        try connection.execute("PRAGMA synchronous = FULL")
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("BEGIN IMMEDIATE")
        do {
            let version = Int(try connection.queryFirst("PRAGMA user_version")?.int(0) ?? 0)
            for migration in migrations.dropFirst(version) { try connection.execute(migration) }
            if migrations.count > version { try connection.execute("PRAGMA user_version = \(migrations.count)") }
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
        self.connection = connection
    }

    /// Runs `body` inside a write transaction and returns once that transaction is durable.
    /// If `body` throws, its changes are rolled back and nothing else in the batch is affected.
    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await submit(isWrite: true, body)
    }

    /// Runs `body` with a consistent snapshot of the database (no write lock taken).
    public func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await submit(isWrite: false, body)
    }

    private func submitAny<T: Sendable>(isWrite: Bool, _ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await submit(isWrite: isWrite) { (connection: SQLiteConnection) in try body(connection) }
    }

    private func submit<T: Sendable>(isWrite: Bool, _ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(isWrite: isWrite, execute: { connection in
                do {
                    let value = try body(connection)
                    return (true, { error in
                        if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: value) }
                    })
                } catch {
                    return (false, { _ in continuation.resume(throwing: error) })
                }
            }, fail: { error in continuation.resume(throwing: error) })
            let startDrain = pending.withLock { state -> Bool in
                state.jobs.append(job)
                if state.draining { return false }
                state.draining = true
                return true
            }
            if startDrain { queue.async { self.drain() } }
        }
    }

    /// Jobs waiting for the next batch (tests use it to line up a batch).
    var queuedJobCount: Int { pending.withLock { $0.jobs.count } }

    /// Runs batches until no job is waiting. Only ever runs on `queue`.
    private func drain() {
        var again: [Job] = []
        while true {
            let batch = again + pending.withLock { state -> [Job] in
                let jobs = state.jobs
                state.jobs = []
                if jobs.isEmpty && again.isEmpty { state.draining = false }
                return jobs
            }
            if batch.isEmpty { return }
            again = runBatch(batch)
        }
    }

    /// Runs a batch in one transaction and tells every job what happened to it: committed, rolled
    /// back alone (it failed), or not committed (the commit failed). Returns the jobs to run again
    /// in the next batch: those whose work was undone, before anyone was told, because another job
    /// ended the whole transaction (SQLite rolls back by itself after some failures). The job that
    /// ended it is answered with its own error and not run again, so every rerun makes progress.
    private func runBatch(_ batch: [Job]) -> [Job] {
        let writes = batch.contains { $0.isWrite }
        do {
            // IMMEDIATE takes the write lock up front, so a busy file makes us wait (busy_timeout)
            // here rather than fail half-way through the batch.
            try connection.execute(writes ? "BEGIN IMMEDIATE" : "BEGIN")
        } catch {
            for job in batch { job.fail(Self.sqliteError(error, "BEGIN")) }
            return []
        }
        let isolated = batch.count > 1
        var kept: [(job: Job, finish: (SQLiteError?) -> Void)] = []
        kept.reserveCapacity(batch.count)
        for (index, job) in batch.enumerated() {
            if isolated {
                do {
                    try connection.execute("SAVEPOINT job")
                } catch {
                    job.fail(Self.sqliteError(error, "SAVEPOINT job"))  // never ran; the others go on
                    continue
                }
            }
            connection.refusesTransactionControl = true
            let outcome = job.execute(connection)
            connection.refusesTransactionControl = false
            var broken = !connection.isInTransaction
            if !broken && isolated {
                // Undo a failed job's own changes, then close its savepoint (either way).
                if !outcome.succeeded { broken = (try? connection.execute("ROLLBACK TO job")) == nil }
                if !broken { broken = (try? connection.execute("RELEASE job")) == nil }
            }
            if broken {
                // The transaction is gone, or cannot drop this job's partial work: roll back what is
                // left of it. This job hears its own error (or, had it succeeded, that it was undone);
                // the jobs before it and after it run again in a fresh transaction.
                if connection.isInTransaction { try? connection.execute("ROLLBACK") }
                outcome.finish(outcome.succeeded ? SQLiteError(code: SQLITE_ABORT, message: "SQLite rolled the transaction back during this job, after a failure the job did not pass on; its work was not committed as a whole", sql: "") : nil)
                return kept.map(\.job) + batch[(index + 1)...]
            }
            if !isolated && !outcome.succeeded {
                try? connection.execute("ROLLBACK")
                outcome.finish(nil)
                return []
            }
            if outcome.succeeded { kept.append((job, outcome.finish)) } else { outcome.finish(nil) }
        }
        var commitError: SQLiteError?
        do {
            try connection.execute("COMMIT")
        } catch {
            commitError = Self.sqliteError(error, "COMMIT")
            if connection.isInTransaction { try? connection.execute("ROLLBACK") }
        }
        for (_, finish) in kept { finish(commitError) }
        return []
    }

    private static func sqliteError(_ error: any Error, _ sql: String) -> SQLiteError {
        error as? SQLiteError ?? SQLiteError(code: -1, message: "\(error)", sql: sql)
    }
}

extension SQLiteDatabase {
    public var dialect: Dialect { .sqlite }

    /// One writer per file: `keys` need no lock of their own.
    public func transaction<T: Sendable>(locking keys: [String], _ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await submitAny(isWrite: true, body)
    }

    public func snapshot<T: Sendable>(_ body: @escaping @Sendable (any SQLTransaction) throws -> T) async throws -> T {
        try await submitAny(isWrite: false, body)
    }
}
