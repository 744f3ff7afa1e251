import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// A saga as Workflow checkpoints it after every step.
public struct SagaRecord: Sendable, Hashable {
    public var status: WorkflowV1.SagaStatus
    /// The queued request (a serialized RequestEnvelope) the saga runs.
    public var envelope: [UInt8]
    /// What earlier steps produced that later steps and compensations need.
    public var droneID = ""
    public var packageID = ""
    /// A failed saga has been handed to the Supervisor.
    public var reported = false

    public init(status: WorkflowV1.SagaStatus, envelope: [UInt8]) {
        self.status = status
        self.envelope = envelope
    }
}

/// Where Workflow keeps its saga checkpoints.
public protocol SagaStore: Sendable {
    func saga(id: String) async throws -> SagaRecord?
    func save(_ saga: SagaRecord) async throws
    func sagas(deliveryID: String) async throws -> [SagaRecord]
    func sagas(state: WorkflowV1.SagaState?, offset: Int, limit: Int) async throws -> [SagaRecord]
}

/// Saga checkpoints in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLSagaStore: SagaStore {
    let database: any SQLDatabase

    /// How many sagas are in each state (for the metrics endpoint).
    public func countsByState() async throws -> [Int64: Int] {
        try await database.groupCounts("SELECT state, COUNT(*) FROM sagas GROUP BY state")
    }

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state INTEGER NOT NULL, create_time REAL NOT NULL,
                            drone_id TEXT NOT NULL, package_id TEXT NOT NULL, reported INTEGER NOT NULL,
                            envelope BLOB NOT NULL, status BLOB NOT NULL);
        CREATE INDEX sagas_delivery ON sagas (delivery_id, create_time);
        CREATE INDEX sagas_state ON sagas (state, create_time);
        """,
    ], postgres: [
        """
        CREATE TABLE sagas (saga_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, state BIGINT NOT NULL, create_time DOUBLE PRECISION NOT NULL,
                            drone_id TEXT NOT NULL, package_id TEXT NOT NULL, reported BIGINT NOT NULL,
                            envelope BYTEA NOT NULL, status BYTEA NOT NULL);
        CREATE INDEX sagas_delivery ON sagas (delivery_id, create_time);
        CREATE INDEX sagas_state ON sagas (state, create_time);
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

    static let columns = "status, envelope, drone_id, package_id, reported"

    static func load(_ row: Row) throws -> SagaRecord {
        var record = SagaRecord(status: try WorkflowV1.SagaStatus(storedBytes: row.bytes(0), what: "saga"), envelope: row.bytes(1))
        record.droneID = row.string(2)
        record.packageID = row.string(3)
        record.reported = row.bool(4)
        return record
    }

    public func saga(id: String) async throws -> SagaRecord? {
        try await database.read { db in try db.queryFirst("SELECT \(Self.columns) FROM sagas WHERE saga_id = ?", [.text(id)]).map(Self.load) }
    }

    public func save(_ saga: SagaRecord) async throws {
        try await database.write { db in
            try db.run("""
                INSERT INTO sagas (saga_id, delivery_id, state, create_time, drone_id, package_id, reported, envelope, status)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (saga_id) DO UPDATE SET delivery_id = excluded.delivery_id, state = excluded.state, create_time = excluded.create_time,
                    drone_id = excluded.drone_id, package_id = excluded.package_id, reported = excluded.reported,
                    envelope = excluded.envelope, status = excluded.status
                """, [.text(saga.status.sagaId), .text(saga.status.deliveryId), .integer(Int64(saga.status.state.rawValue)),
                      .real(saga.status.createTime?.secondsSince1970 ?? 0), .text(saga.droneID), .text(saga.packageID), .bool(saga.reported),
                      .blob(saga.envelope), .blob(saga.status.serializedBytes())])
        }
    }

    public func sagas(deliveryID: String) async throws -> [SagaRecord] {
        try await database.read { db in
            try db.query("SELECT \(Self.columns) FROM sagas WHERE delivery_id = ? ORDER BY create_time", [.text(deliveryID)]).map(Self.load)
        }
    }

    public func sagas(state: WorkflowV1.SagaState?, offset: Int, limit: Int) async throws -> [SagaRecord] {
        try await database.read { db in
            if let state {
                return try db.query("SELECT \(Self.columns) FROM sagas WHERE state = ? ORDER BY create_time LIMIT ? OFFSET ?",
                                    [.integer(Int64(state.rawValue)), .int(limit), .int(offset)]).map(Self.load)
            }
            return try db.query("SELECT \(Self.columns) FROM sagas ORDER BY create_time LIMIT ? OFFSET ?", [.int(limit), .int(offset)]).map(Self.load)
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteSagaStore = SQLSagaStore
