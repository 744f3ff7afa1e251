import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// Where the Supervisor keeps failed sagas and the progress of their compensation.
///
/// Several Supervisor replicas share one store. A replica works on a saga only while it holds
/// the saga's claim (`claimDue`, `claim`): a holder name and an expiry time on the database's
/// clock. Its save at the end of the round is fenced by that holder, so a replica that stalled
/// past its claim, while another took the saga over, changes nothing (`ClaimLost`).
public protocol FailedSagaStore: Sendable {
    func insert(_ saga: SupervisorV1.FailedSaga) async throws -> (saga: SupervisorV1.FailedSaga, created: Bool)
    func saga(id: String) async throws -> SupervisorV1.FailedSaga?
    /// Saves a saga nobody compensates (a forward retry of a finished one); leaves any claim as it is.
    func save(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?) async throws
    /// Saves the outcome of a compensation round and ends `holder`'s claim on the saga. Throws
    /// `ClaimLost`, and changes nothing, when `holder` no longer holds the claim (it expired and
    /// another replica took the saga).
    func save(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?, holder: String) async throws
    /// Sagas with compensation work due at `now` (whoever holds them).
    func due(now: Double, limit: Int) async throws -> [SupervisorV1.FailedSaga]
    /// Claims for `holder`, for `duration`, up to `limit` sagas due at `now` that nobody holds (or
    /// whose claim has expired), oldest due first, and returns them. Atomic: two replicas claiming
    /// at once never get the same saga.
    func claimDue(now: Double, limit: Int, holder: String, for duration: Duration) async throws -> [SupervisorV1.FailedSaga]
    /// Claims one saga, whether due or not, unless a claim on it is still running (even
    /// `holder`'s own: a round of this replica's loop is compensating it).
    func claim(id: String, holder: String, for duration: Duration) async throws -> SagaClaim
    func list(states: [SupervisorV1.FailedSagaState], deliveryID: String, offset: Int, limit: Int) async throws -> [SupervisorV1.FailedSaga]
    /// Ends `holder`'s claim on a saga without changing it (the claimed work was refused);
    /// nothing when `holder` does not hold it.
    func release(id: String, holder: String) async throws
}

/// What claiming one saga found.
public enum SagaClaim: Sendable, Equatable {
    /// Ours until the claim expires; the saga as stored.
    case claimed(SupervisorV1.FailedSaga)
    /// Another round holds it.
    case heldBy(String)
    case notFound
}

/// A fenced save found that the saver no longer holds the saga's claim: another replica took
/// the saga over after the claim expired. Nothing was saved; the round's result is dropped.
public struct ClaimLost: Error, CustomStringConvertible, Sendable {
    public let sagaID: String
    public let holder: String
    public var description: String { "the claim of \(holder) on failed saga \(sagaID) was lost (it expired and was taken over); the round's result was dropped" }
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
        // Claims: which replica compensates the saga, until when (the database's clock), so
        // several Supervisor replicas never work on one saga at once.
        """
        ALTER TABLE failed_sagas ADD COLUMN claim_holder TEXT;
        ALTER TABLE failed_sagas ADD COLUMN claim_until REAL;
        """,
    ], postgres: [
        """
        CREATE TABLE failed_sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state BIGINT NOT NULL,
                                   fail_time DOUBLE PRECISION NOT NULL, next_attempt DOUBLE PRECISION, data BYTEA NOT NULL);
        CREATE INDEX failed_sagas_due ON failed_sagas (next_attempt);
        CREATE INDEX failed_sagas_delivery ON failed_sagas (delivery_id);
        """,
        "ALTER TABLE failed_sagas ADD COLUMN claim_holder TEXT, ADD COLUMN claim_until DOUBLE PRECISION;",
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

    public func save(_ saga: SupervisorV1.FailedSaga, nextAttempt: Double?, holder: String) async throws {
        let saved = try await database.write { db in
            try db.run("""
                UPDATE failed_sagas SET state = ?, next_attempt = ?, data = ?, claim_holder = NULL, claim_until = NULL
                 WHERE saga_id = ? AND claim_holder = ?
                """, [.integer(Int64(saga.state.rawValue)), nextAttempt.map { .real($0) } ?? .null, .blob(try saga.serializedBytes()),
                      .text(saga.sagaId), .text(holder)])
        }
        if saved == 0 { throw ClaimLost(sagaID: saga.sagaId, holder: holder) }
    }

    public func release(id: String, holder: String) async throws {
        _ = try await database.write { db in
            try db.run("UPDATE failed_sagas SET claim_holder = NULL, claim_until = NULL WHERE saga_id = ? AND claim_holder = ?",
                       [.text(id), .text(holder)])
        }
    }

    public func claimDue(now: Double, limit: Int, holder: String, for duration: Duration) async throws -> [SupervisorV1.FailedSaga] {
        try await database.write { db in
            // PostgreSQL: the subquery locks the rows it picks and skips those another claimer has
            // locked; a row claimed and committed meanwhile is re-checked against the WHERE and
            // dropped. SQLite: one writer runs this whole statement alone.
            let clock = db.dialect.epochNow
            return try db.query("""
                UPDATE failed_sagas SET claim_holder = ?, claim_until = \(clock) + ?
                 WHERE saga_id IN (SELECT saga_id FROM failed_sagas
                                    WHERE next_attempt IS NOT NULL AND next_attempt <= ?
                                      AND (claim_until IS NULL OR claim_until < \(clock))
                                    ORDER BY next_attempt LIMIT ?\(db.dialect.skipLocked))
                RETURNING next_attempt, data
                """, [.text(holder), .real(Self.seconds(duration)), .real(now), .int(limit)])
                .map { (due: $0.double(0), saga: try SupervisorV1.FailedSaga(storedBytes: $0.bytes(1), what: "failed saga")) }
                .sorted { $0.due < $1.due }  // RETURNING keeps no order
                .map(\.saga)
        }
    }

    public func claim(id: String, holder: String, for duration: Duration) async throws -> SagaClaim {
        try await database.write { db in
            let clock = db.dialect.epochNow
            if let row = try db.queryFirst("""
                UPDATE failed_sagas SET claim_holder = ?, claim_until = \(clock) + ?
                 WHERE saga_id = ? AND (claim_until IS NULL OR claim_until < \(clock))
                RETURNING data
                """, [.text(holder), .real(Self.seconds(duration)), .text(id)]) {
                return .claimed(try SupervisorV1.FailedSaga(storedBytes: row.bytes(0), what: "failed saga"))
            }
            guard let row = try db.queryFirst("SELECT claim_holder FROM failed_sagas WHERE saga_id = ?", [.text(id)]) else { return .notFound }
            return .heldBy(row.string(0))
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
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
