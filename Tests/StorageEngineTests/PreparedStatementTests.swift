import Storage
import StoragePostgres
import Testing
import TestSupport

/// The libpq layer prepares each statement once per connection (issue 15: PostgreSQL's CPU per
/// statement) and prepares it again when the session has lost it or its plan went stale.
@Suite("PostgreSQL prepared statements")
struct PreparedStatementTests {
    @Test("a statement is prepared once per connection and reused; after its table changes shape, or the session forgets it, it is prepared again",
          .timeLimit(.minutes(1)), arguments: TestEngine.postgresOnly)
    func preparedOnceAndAgain(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let url = place.url, schema = place.schema
            // One connection, so every call below runs in the same session.
            let database = try await onOwnThread {
                try PostgresDatabase(url: url, schema: schema, poolSize: 1, migrations: ["CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL)"])
            }
            try await database.write { try $0.run("INSERT INTO t (k, n) VALUES (?, ?)", ["a", 1]) }
            let read = "SELECT n FROM t WHERE k = ?"
            for _ in 0..<5 { #expect(try await database.read { try $0.queryFirst(read, ["a"])?.int(0) } == 1) }
            let prepared = try await database.read {
                try $0.query("SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT n FROM t %'", []).map { $0.string(0) }
            }
            #expect(prepared == ["SELECT n FROM t WHERE k = $1"], "five reads, one prepared statement: \(prepared)")

            // Another session changes the column's type: the prepared plan's result type is stale
            // (0A000); the read is run again, prepared afresh, and sees the new type.
            try await onOwnThread { try PostgresDatabase.execute(url: url, "ALTER TABLE \(schema).t ALTER COLUMN n TYPE TEXT USING n::text") }
            #expect(try await database.read { try $0.queryFirst(read, ["a"])?.string(0) } == "1")
            // The same for a write transaction.
            try await onOwnThread { try PostgresDatabase.execute(url: url, "ALTER TABLE \(schema).t ALTER COLUMN n TYPE BIGINT USING n::bigint") }
            #expect(try await database.write { try $0.queryFirst(read, ["a"])?.int(0) } == 1)

            // The session forgets its prepared statements (as `DISCARD ALL` from a pooler does):
            // the next use is 26000, and is run again.
            try await database.write { try $0.run("DEALLOCATE ALL") }
            #expect(try await database.read { try $0.queryFirst(read, ["a"])?.int(0) } == 1)
            #expect(try await database.write { try $0.run("UPDATE t SET n = ? WHERE k = ?", [2, "a"]) } == 1)
            #expect(try await database.read { try $0.queryFirst(read, ["a"])?.int(0) } == 2)
        }
    }
}
