import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// Where the Supervisor keeps failed sagas and the progress of their compensation.
public protocol FailedSagaStore: Sendable {
    func insert(_ saga: SupervisorV1.FailedSaga) async throws -> (saga: SupervisorV1.FailedSaga, created: Bool)
    func saga(id: String) async throws -> SupervisorV1.FailedSaga?
    func save(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?) async throws
    /// Sagas with compensation work due at `now`.
    func due(now: Double, limit: Int) async throws -> [SupervisorV1.FailedSaga]
    func list(states: [SupervisorV1.FailedSagaState], deliveryID: String, offset: Int, limit: Int) async throws -> [SupervisorV1.FailedSaga]
}

/// Failed sagas in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLFailedSagaStore: FailedSagaStore {
    let database: any SQLDatabase

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE failed_sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state INTEGER NOT NULL,
                                   fail_time REAL NOT NULL, next_attempt REAL, data BLOB NOT NULL);
        CREATE INDEX failed_sagas_due ON failed_sagas (next_attempt);
        CREATE INDEX failed_sagas_delivery ON failed_sagas (delivery_id);
        """,
    ], postgres: [
        """
        CREATE TABLE failed_sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state BIGINT NOT NULL,
                                   fail_time DOUBLE PRECISION NOT NULL, next_attempt DOUBLE PRECISION, data BYTEA NOT NULL);
        CREATE INDEX failed_sagas_due ON failed_sagas (next_attempt);
        CREATE INDEX failed_sagas_delivery ON failed_sagas (delivery_id);
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

    public func insert(_ saga: SupervisorV1.FailedSaga) async throws -> (saga: SupervisorV1.FailedSaga, created: Bool) {
        try await database.write { db in
            // Due at once when there is something to compensate; a resolved saga is never due.
            // One statement decides between two replicas reporting the same saga at once.
            let inserted = try db.run("""
                INSERT INTO failed_sagas (saga_id, delivery_id, state, fail_time, next_attempt, data) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (saga_id) DO NOTHING
                """, try Self.values(saga, nextAttempt: saga.compensations.isEmpty ? nil : 0))
            if inserted == 1 { return (saga, true) }
            guard let row = try db.queryFirst("SELECT data FROM failed_sagas WHERE saga_id = ?", [.text(saga.sagaId)]) else {
                throw StorageError("failed saga \(saga.sagaId) vanished while it was being read")
            }
            return (try SupervisorV1.FailedSaga(storedBytes: row.bytes(0), what: "failed saga"), false)
        }
    }

    static func values(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?) throws -> [SQLValue] {
        [.text(saga.sagaId), .text(saga.deliveryId), .integer(Int64(saga.state.rawValue)), .real(saga.failTime?.secondsSince1970 ?? 0),
         nextAttempt.map { .real($0) } ?? .null, .blob(try saga.serializedBytes())]
    }

    static func write(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?, _ db: any SQLTransaction) throws {
        try db.run("""
            INSERT INTO failed_sagas (saga_id, delivery_id, state, fail_time, next_attempt, data) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (saga_id) DO UPDATE SET delivery_id = excluded.delivery_id, state = excluded.state, fail_time = excluded.fail_time,
                next_attempt = excluded.next_attempt, data = excluded.data
            """, try values(saga, nextAttempt: nextAttempt))
    }

    public func saga(id: String) async throws -> SupervisorV1.FailedSaga? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM failed_sagas WHERE saga_id = ?", [.text(id)]).map { try SupervisorV1.FailedSaga(storedBytes: $0.bytes(0), what: "failed saga") }
        }
    }

    public func save(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?) async throws {
        try await database.write { db in try Self.write(saga, nextAttempt: nextAttempt, db) }
    }

    public func due(now: Double, limit: Int) async throws -> [SupervisorV1.FailedSaga] {
        try await database.read { db in
            try db.query("SELECT data FROM failed_sagas WHERE next_attempt IS NOT NULL AND next_attempt <= ? ORDER BY next_attempt LIMIT ?", [.real(now), .int(limit)])
                .map { try SupervisorV1.FailedSaga(storedBytes: $0.bytes(0), what: "failed saga") }
        }
    }

    public func list(states: [SupervisorV1.FailedSagaState], deliveryID: String, offset: Int, limit: Int) async throws -> [SupervisorV1.FailedSaga] {
        try await database.read { db in
            var sql = "SELECT data FROM failed_sagas WHERE 1 = 1"
            var parameters: [SQLValue] = []
            if !deliveryID.isEmpty { sql += " AND delivery_id = ?"; parameters.append(.text(deliveryID)) }
            if !states.isEmpty {
                let list = SQLValue.inList(states.map { .integer(Int64($0.rawValue)) })
                sql += " AND state IN " + list.sql
                parameters += list.parameters
            }
            sql += " ORDER BY fail_time, saga_id LIMIT ? OFFSET ?"
            parameters += [.int(limit), .int(offset)]
            return try db.query(sql, parameters).map { try SupervisorV1.FailedSaga(storedBytes: $0.bytes(0), what: "failed saga") }
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteFailedSagaStore = SQLFailedSagaStore
