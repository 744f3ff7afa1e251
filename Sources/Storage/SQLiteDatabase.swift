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
/// - `busy_timeout` lets several processes share a file (the embedded message broker).
public final class SQLiteDatabase: Sendable {
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

    /// Runs batches until no job is waiting. Only ever runs on `queue`.
    private func drain() {
        while true {
            let batch = pending.withLock { state -> [Job] in
                let jobs = state.jobs
                state.jobs = []
                if jobs.isEmpty { state.draining = false }
                return jobs
            }
            if batch.isEmpty { return }
            runBatch(batch)
        }
    }

    private func runBatch(_ batch: [Job]) {
        let writes = batch.contains { $0.isWrite }
        do {
            // IMMEDIATE takes the write lock up front, so a busy file makes us wait (busy_timeout)
            // here rather than fail half-way through the batch.
            try connection.execute(writes ? "BEGIN IMMEDIATE" : "BEGIN")
        } catch let error as SQLiteError {
            for job in batch { job.fail(error) }
            return
        } catch {
            for job in batch { job.fail(SQLiteError(code: -1, message: "\(error)", sql: "BEGIN")) }
            return
        }

        var finishers: [(SQLiteError?) -> Void] = []
        finishers.reserveCapacity(batch.count)
        for job in batch {
            if batch.count > 1 { try? connection.execute("SAVEPOINT job") }
            let outcome = job.execute(connection)
            if batch.count > 1 {
                if !outcome.succeeded { try? connection.execute("ROLLBACK TO job") }
                try? connection.execute("RELEASE job")
            } else if !outcome.succeeded {
                try? connection.execute("ROLLBACK")
                outcome.finish(nil)
                return
            }
            finishers.append(outcome.finish)
        }
        var commitError: SQLiteError?
        do {
            try connection.execute("COMMIT")
        } catch let error as SQLiteError {
            commitError = error
            try? connection.execute("ROLLBACK")
        } catch {}
        for finish in finishers { finish(commitError) }
    }
}
