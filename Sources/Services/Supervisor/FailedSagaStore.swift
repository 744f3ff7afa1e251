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

public final class SQLiteFailedSagaStore: FailedSagaStore {
    let database: SQLiteDatabase

    public init(path: String) throws {
        database = try SQLiteDatabase(path: path, migrations: [
            """
            CREATE TABLE failed_sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state INTEGER NOT NULL,
                                       fail_time REAL NOT NULL, next_attempt REAL, data BLOB NOT NULL);
            CREATE INDEX failed_sagas_due ON failed_sagas (next_attempt);
            CREATE INDEX failed_sagas_delivery ON failed_sagas (delivery_id);
            """,
        ])
    }

    public func insert(_ saga: SupervisorV1.FailedSaga) async throws -> (saga: SupervisorV1.FailedSaga, created: Bool) {
        try await database.write { db in
            if let row = try db.queryFirst("SELECT data FROM failed_sagas WHERE saga_id = ?", [.text(saga.sagaId)]) {
                return (try SupervisorV1.FailedSaga(storedBytes: row.bytes(0), what: "failed saga"), false)
            }
            // Due at once when there is something to compensate; a resolved saga is never due.
            try Self.write(saga, nextAttempt: saga.compensations.isEmpty ? nil : 0, db)
            return (saga, true)
        }
    }

    static func write(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?, _ db: SQLiteConnection) throws {
        try db.run("INSERT OR REPLACE INTO failed_sagas (saga_id, delivery_id, state, fail_time, next_attempt, data) VALUES (?, ?, ?, ?, ?, ?)",
                   [.text(saga.sagaId), .text(saga.deliveryId), .integer(Int64(saga.state.rawValue)), .real(saga.failTime?.secondsSince1970 ?? 0),
                    nextAttempt.map { .real($0) } ?? .null, .blob(saga.serializedBytes())])
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
