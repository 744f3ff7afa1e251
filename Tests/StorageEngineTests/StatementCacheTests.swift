@testable import Storage
@testable import StoragePostgres
import Testing
import TestSupport

/// A connection keeps prepared statements by their text. A text made of values (an `IN` list's
/// length, as ListFailedSagas built from a client's list of states) is a new statement each
/// time; an unbounded cache grew with every one, for the life of the connection.
@Suite("Statement caches stay bounded")
struct StatementCacheTests {
    @Test("700 distinct statement texts on one connection: every answer right, the connection's caches bounded, a fixed statement still cached",
          .timeLimit(.minutes(1)), arguments: TestEngine.available)
    func boundedCaches(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let database = try await place.open({ try $0.open(DatabaseSchema(sqlite: ["CREATE TABLE t (n INTEGER)"],
                                                                               postgres: ["CREATE TABLE t (n BIGINT)"])) }, poolSize: 1)
            try await database.write { try $0.run("INSERT INTO t (n) VALUES (?)", [7]) }
            for count in 1...700 {
                // `n IN (?, ?, ...)` with `count` placeholders: 700 texts.
                let list = Array(repeating: "?", count: count).joined(separator: ", ")
                let values = (0..<count).map { SQLValue.integer(Int64($0 == count - 1 ? 7 : 1000 + $0)) }
                let found = try await database.read { try $0.queryFirst("SELECT n FROM t WHERE n IN (\(list))", values)?.int(0) }
                #expect(found == 7, "list of \(count)")
            }
            let (cached, answer) = try await database.read { db -> (Int, Int64?) in
                let answer = try db.queryFirst("SELECT n FROM t WHERE n = ?", [7])?.int(0)
                let cached: Int
                switch db {
                case let sqlite as SQLiteConnection: cached = sqlite.cachedStatementCount
                case let postgres as PostgresConnection: cached = max(postgres.rewrittenCount, Int(try postgres.queryFirst("SELECT count(*) FROM pg_prepared_statements", [])?.int(0) ?? 0))
                default: cached = -1
                }
                return (cached, answer)
            }
            #expect(answer == 7)
            let limit = engine == .sqlite ? SQLiteConnection.maxCachedStatements : PostgresConnection.maxPrepared
            #expect(cached > 0 && cached <= limit, "\(engine): \(cached) statements kept, at most \(limit) expected")
        }
    }
}
