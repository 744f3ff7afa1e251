import Dispatch
import Foundation
@testable import Storage
import Synchronization
import Testing
import TestSupport

/// Group commit when one job of a batch fails: every other job learns exactly what happened to
/// its own work. The batch is lined up for real: a first write holds the database's queue while
/// three more jobs queue behind it, so the three run in one transaction.
@Suite("Group commit: a failure in the middle of a batch")
struct GroupCommitTests {
    let schema = """
        CREATE TABLE t (k INTEGER PRIMARY KEY);
        CREATE TABLE poison (x INTEGER);
        CREATE TRIGGER poison_rolls_back BEFORE INSERT ON poison BEGIN SELECT RAISE(ROLLBACK, 'poisoned row'); END;
        """

    /// Runs `jobs` as one batch, in order, and returns each one's outcome (its error, or nil).
    func runAsOneBatch(_ database: SQLiteDatabase,
                       _ jobs: [@Sendable (SQLiteConnection) throws -> Void]) async throws -> [String?] {
        let gate = DispatchSemaphore(value: 0)
        let holding = Atomic(false)
        let holder = Task { try await database.write { _ in holding.store(true, ordering: .sequentiallyConsistent); gate.wait() } }
        try await waitUntil { holding.load(ordering: .sequentiallyConsistent) }
        var tasks: [Task<String?, Never>] = []
        for (index, job) in jobs.enumerated() {
            tasks.append(Task {
                do { try await database.write(job); return nil } catch { return "\(error)" }
            })
            try await waitUntil { database.queuedJobCount == index + 1 }  // queued in this order
        }
        gate.signal()
        try await holder.value
        var outcomes: [String?] = []
        for task in tasks { outcomes.append(await task.value) }
        return outcomes
    }

    func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    func keys(_ database: SQLiteDatabase) async throws -> [Int] {
        try await database.read { try $0.query("SELECT k FROM t ORDER BY k").map { Int($0.int(0)) } }
    }

    func database() throws -> SQLiteDatabase {
        try SQLiteDatabase(path: makeTemporaryDirectory("group-commit").appendingPathComponent("g.sqlite").path, migrations: [schema])
    }

    @Test("a job whose failure makes SQLite roll back the whole transaction fails alone: the jobs before and after it are committed and say so")
    func transactionEndingFailure() async throws {
        let database = try database()
        let outcomes = try await runAsOneBatch(database, [
            { try $0.run("INSERT INTO t VALUES (1)") },
            { db in
                try db.run("INSERT INTO t VALUES (2)")
                try db.run("INSERT INTO poison VALUES (1)")  // RAISE(ROLLBACK): SQLite ends the transaction
            },
            { try $0.run("INSERT INTO t VALUES (3)") },
        ])
        #expect(outcomes[0] == nil, "the first job is committed")
        #expect(outcomes[1]?.contains("poisoned row") == true, "the failing job gets its own error: \(outcomes[1] ?? "none")")
        #expect(outcomes[2] == nil, "the last job is committed")
        #expect(try await keys(database) == [1, 3], "exactly the work of the jobs that were told they succeeded")
    }

    @Test("a statement that fails in the middle of a batch rolls back its own job only")
    func statementFailure() async throws {
        let database = try database()
        let outcomes = try await runAsOneBatch(database, [
            { try $0.run("INSERT INTO t VALUES (1)") },
            { db in
                try db.run("INSERT INTO t VALUES (2)")
                try db.run("INSERT INTO t VALUES (1)")  // UNIQUE: this job's row 2 goes too
            },
            { try $0.run("INSERT INTO t VALUES (3)") },
        ])
        #expect(outcomes[0] == nil && outcomes[2] == nil)
        #expect(outcomes[1]?.contains("UNIQUE") == true)
        #expect(try await keys(database) == [1, 3])
    }

    @Test("a job cannot commit or roll back the batch it shares (refused), and the others are unaffected")
    func jobCannotEndTheTransaction() async throws {
        let database = try database()
        let outcomes = try await runAsOneBatch(database, [
            { try $0.run("INSERT INTO t VALUES (1)") },
            { db in
                try db.run("INSERT INTO t VALUES (2)")
                try db.execute("ROLLBACK")
            },
            { try $0.run("INSERT INTO t VALUES (3)") },
        ])
        #expect(outcomes[0] == nil && outcomes[2] == nil)
        #expect(outcomes[1]?.contains("not authorized") == true, "\(outcomes[1] ?? "none")")
        #expect(try await keys(database) == [1, 3])
    }
}
