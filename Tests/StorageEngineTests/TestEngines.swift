import Foundation
import Storage
import StoragePostgres
import Testing
import TestSupport

/// The store engines a test runs against: SQLite always; PostgreSQL when
/// FABRIKAM_TEST_POSTGRES_URL names a server (tools/with-postgres.sh starts one and sets it). With
/// FABRIKAM_REQUIRE_ENGINES=1 (`make test`, CI) PostgreSQL is always listed, and a missing URL
/// fails its tests instead of skipping them: a broken start script cannot turn the suite green
/// by running nothing.
enum TestEngine: String, CustomStringConvertible, Sendable {
    case sqlite, postgres
    var description: String { rawValue }

    static var postgresURL: String? {
        let url = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_URL"] ?? ""
        return url.isEmpty ? nil : url
    }
    static var required: Bool { ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1" }
    static var available: [TestEngine] { postgresURL != nil || required ? [.sqlite, .postgres] : [.sqlite] }
    static var postgresOnly: [TestEngine] { postgresURL != nil || required ? [.postgres] : [] }
}

/// One test's own database: a SQLite file in a fresh directory, or a fresh PostgreSQL schema
/// (`t_<random>`, dropped at the end), so tests run in parallel without seeing each other.
struct TestDatabase: Sendable {
    let engine: TestEngine
    let path: String
    let url: String
    let schema: String

    /// Where a store opens this test's database; a second call is a second handle on the same
    /// data (a second replica). PostgreSQL pools are small: many tests run at once.
    func location(poolSize: Int = 2) -> any DatabaseLocation {
        switch engine {
        case .sqlite: SQLiteLocation(path: path)
        case .postgres: PostgresLocation(url: url, schema: schema, poolSize: poolSize)
        }
    }

    /// Opens a store (connecting and migrating block, so on a thread of its own).
    func open<Store: Sendable>(_ make: @escaping @Sendable (any DatabaseLocation) throws -> Store, poolSize: Int = 2) async throws -> Store {
        let location = location(poolSize: poolSize)
        return try await onOwnThread { try make(location) }
    }
}

/// Runs `body` with a fresh database of `engine`, and removes it afterwards (also on failure).
func withDatabase(_ engine: TestEngine, _ body: (TestDatabase) async throws -> Void) async throws {
    switch engine {
    case .sqlite:
        let directory = try makeTemporaryDirectory("store-engine")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(TestDatabase(engine: .sqlite, path: directory.appendingPathComponent("store.sqlite").path, url: "", schema: ""))
    case .postgres:
        guard let url = TestEngine.postgresURL else {
            Issue.record("FABRIKAM_TEST_POSTGRES_URL is not set but FABRIKAM_REQUIRE_ENGINES=1: run the tests through tools/with-postgres.sh")
            return
        }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let database = TestDatabase(engine: .postgres, path: "", url: url, schema: String(schema))
        do {
            try await body(database)
        } catch {
            try? await onOwnThread { try PostgresDatabase.execute(url: url, "DROP SCHEMA IF EXISTS \(schema) CASCADE") }
            throw error
        }
        try await onOwnThread { try PostgresDatabase.execute(url: url, "DROP SCHEMA IF EXISTS \(schema) CASCADE") }
    }
}
