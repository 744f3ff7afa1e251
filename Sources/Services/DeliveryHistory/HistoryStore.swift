import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// Where Delivery History keeps its append-only event log.
public protocol HistoryStore: Sendable {
    /// Appends the event unless its id is already recorded; returns the stored one and whether it is new.
    func append(_ event: DeliveryHistoryV1.DeliveryHistoryEvent) async throws -> (event: DeliveryHistoryV1.DeliveryHistoryEvent, created: Bool)
    func events(deliveryID: String, offset: Int, limit: Int) async throws -> [DeliveryHistoryV1.DeliveryHistoryEvent]
    /// The account a delivery's recorded events belong to; nil when none is recorded.
    func owner(deliveryID: String) async throws -> String?
    func events(ownerID: String, start: Double?, end: Double?, stages: [CommonV1.DeliveryStage], offset: Int, limit: Int) async throws -> [DeliveryHistoryV1.DeliveryHistoryEvent]
}

/// The event log in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLHistoryStore: HistoryStore {
    let database: any SQLDatabase

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE events (event_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, owner_id TEXT NOT NULL,
                             stage INTEGER NOT NULL, event_time REAL NOT NULL, sequence INTEGER NOT NULL, data BLOB NOT NULL);
        CREATE INDEX events_delivery ON events (delivery_id, sequence);
        CREATE INDEX events_owner ON events (owner_id, event_time);
        """,
    ], postgres: [
        """
        CREATE TABLE events (event_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, owner_id TEXT NOT NULL,
                             stage BIGINT NOT NULL, event_time DOUBLE PRECISION NOT NULL, sequence BIGINT NOT NULL, data BYTEA NOT NULL);
        CREATE INDEX events_delivery ON events (delivery_id, sequence);
        CREATE INDEX events_owner ON events (owner_id, event_time);
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

    /// One statement decides: two replicas appending the same (redelivered) event at once insert
    /// it once; the other reads the stored one.
    public func append(_ event: DeliveryHistoryV1.DeliveryHistoryEvent) async throws -> (event: DeliveryHistoryV1.DeliveryHistoryEvent, created: Bool) {
        try await database.write { db in
            let inserted = try db.run("""
                INSERT INTO events (event_id, delivery_id, owner_id, stage, event_time, sequence, data) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (event_id) DO NOTHING
                """, [.text(event.eventId), .text(event.deliveryId), .text(event.owner?.accountId ?? ""), .integer(Int64(event.stage.rawValue)),
                      .real(event.eventTime?.secondsSince1970 ?? 0), .integer(event.sequence), .blob(event.serializedBytes())])
            if inserted == 1 { return (event, true) }
            guard let row = try db.queryFirst("SELECT data FROM events WHERE event_id = ?", [.text(event.eventId)]) else {
                throw StorageError("history event \(event.eventId) vanished while it was being read")
            }
            return (try DeliveryHistoryV1.DeliveryHistoryEvent(storedBytes: row.bytes(0), what: "history event"), false)
        }
    }

    public func events(deliveryID: String, offset: Int, limit: Int) async throws -> [DeliveryHistoryV1.DeliveryHistoryEvent] {
        try await database.read { db in
            try db.query("SELECT data FROM events WHERE delivery_id = ? ORDER BY sequence, event_time LIMIT ? OFFSET ?", [.text(deliveryID), .int(limit), .int(offset)])
                .map { try DeliveryHistoryV1.DeliveryHistoryEvent(storedBytes: $0.bytes(0), what: "history event") }
        }
    }

    public func owner(deliveryID: String) async throws -> String? {
        try await database.read { db in
            try db.queryFirst("SELECT owner_id FROM events WHERE delivery_id = ? LIMIT 1", [.text(deliveryID)]).map { $0.string(0) }
        }
    }

    public func events(ownerID: String, start: Double?, end: Double?, stages: [CommonV1.DeliveryStage], offset: Int, limit: Int) async throws -> [DeliveryHistoryV1.DeliveryHistoryEvent] {
        try await database.read { db in
            var sql = "SELECT data FROM events WHERE owner_id = ?"
            var parameters: [SQLValue] = [.text(ownerID)]
            if let start { sql += " AND event_time >= ?"; parameters.append(.real(start)) }
            if let end { sql += " AND event_time < ?"; parameters.append(.real(end)) }
            if !stages.isEmpty {
                sql += " AND stage IN (" + stages.map { _ in "?" }.joined(separator: ", ") + ")"
                parameters += stages.map { .integer(Int64($0.rawValue)) }
            }
            sql += " ORDER BY event_time, event_id LIMIT ? OFFSET ?"
            parameters += [.int(limit), .int(offset)]
            return try db.query(sql, parameters).map { try DeliveryHistoryV1.DeliveryHistoryEvent(storedBytes: $0.bytes(0), what: "history event") }
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteHistoryStore = SQLHistoryStore
