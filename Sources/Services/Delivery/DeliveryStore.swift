import DroneDeliveryAPI
import Foundation
import ProtobufKit
import ServiceKit
import Storage

/// A delivery as the Delivery service keeps it: the entity, its live status, and bookkeeping.
public struct DeliveryRecord: Sendable, Hashable {
    public var delivery: DeliveryV1.Delivery
    public var status: DeliveryV1.DeliveryStatus
    /// The drone reached the drop-off (a delivery that needs confirmation waits here).
    public var arrived = false
    /// The sequence number of the last tracking event.
    public var lastSequence: Int64 = 0
    /// Bumped on each reschedule, so the flight plan gets a new id.
    public var revision = 0
    /// The drone has the package on board (it reached the pickup).
    public var pickedUp = false
    /// The sequence number of the last position report taken from the current flight (0: none
    /// yet); reports at or below it are late or repeated. A new flight (a reschedule) starts at 0.
    public var positionSequence: Int64 = 0

    public init(delivery: DeliveryV1.Delivery, status: DeliveryV1.DeliveryStatus) {
        self.delivery = delivery
        self.status = status
    }
}

/// What one change to a delivery produced, for the store to commit in a single transaction.
public struct DeliveryChange: Sendable {
    public var record: DeliveryRecord
    /// New tracking events (the store numbers them after `record.lastSequence`).
    public var tracking: [DeliveryV1.DeliveryTrackingEvent] = []
    /// Indices into `tracking` of the events that are also domain events (stage changes).
    public var domainEvents: [(index: Int, reason: String)] = []
    /// The flight must stop (the delivery ended): kept until flight control has aborted it.
    public var flightToAbort: String?
    /// The drone stopped reporting (its domain events say so: Drone Scheduler takes it out of service).
    public var droneLost = false

    public init(record: DeliveryRecord) { self.record = record }
}

/// Where Delivery keeps deliveries, tracking events, notification requests and its outbox of
/// domain events (written in the same transaction as the change, published afterwards, so an
/// event is never lost between the database and the broker).
public protocol DeliveryStore: Sendable {
    func record(id: String) async throws -> DeliveryRecord?
    func list(ownerID: String, userID: String, stages: [CommonV1.DeliveryStage], offset: Int, limit: Int) async throws -> [DeliveryV1.Delivery]
    /// Runs `change` on the current record (nil if none) atomically. `change` returns nil for
    /// "nothing to do". An `operationID` already applied makes this a no-op that returns the record.
    func update(id: String, operationID: String?, trace: CommonV1.TraceContext?,
                _ change: @escaping @Sendable (DeliveryRecord?) throws -> DeliveryChange?) async throws -> (record: DeliveryRecord?, tracking: [DeliveryV1.DeliveryTrackingEvent])
    func trackingEvents(deliveryID: String, after sequence: Int64) async throws -> [DeliveryV1.DeliveryTrackingEvent]
    func addNotification(id: String, deliveryID: String, email: String, sms: String) async throws
    /// Domain events not yet handed to the broker, oldest first.
    func outbox(limit: Int) async throws -> [(id: String, event: DeliveryV1.DeliveryEvent)]
    func removeFromOutbox(ids: [String]) async throws
    /// Flights to abort whose next attempt is due at `now`, oldest first: (delivery id, reason).
    func flightAborts(dueAt now: Double, limit: Int) async throws -> [(deliveryID: String, reason: String, attempts: Int)]
    /// The delivery's stored flight abort, if one is still to be done.
    func flightAbort(deliveryID: String) async throws -> (reason: String, attempts: Int)?
    /// The flight was aborted (or had ended): forget it.
    func finishFlightAbort(deliveryID: String) async throws
    /// Flight control could not be reached: try again at `next`.
    func postponeFlightAbort(deliveryID: String, next: Double) async throws
    /// Deliveries in flight (scheduled, not ended, not waiting at the drop-off for confirmation)
    /// whose last position report, or schedule, is older than `before`.
    func silentFlights(before: Double, limit: Int) async throws -> [String]
}

/// Deliveries in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLDeliveryStore: DeliveryStore {
    let database: any SQLDatabase
    /// The leases of Delivery's singleton loops, in this store's database (shared by the replicas).
    public let leases: SQLLeaseStore

    /// How many deliveries are at each stage (for the metrics endpoint).
    public func countsByStage() async throws -> [Int64: Int] {
        try await database.groupCounts("SELECT stage, COUNT(*) FROM deliveries GROUP BY stage")
    }

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE deliveries (delivery_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, user_id TEXT NOT NULL,
                                 stage INTEGER NOT NULL, create_time REAL NOT NULL, arrived INTEGER NOT NULL,
                                 last_sequence INTEGER NOT NULL, revision INTEGER NOT NULL, picked_up INTEGER NOT NULL,
                                 data BLOB NOT NULL, status BLOB NOT NULL);
        CREATE INDEX deliveries_owner ON deliveries (owner_id, create_time);
        CREATE TABLE tracking_events (delivery_id TEXT NOT NULL, sequence INTEGER NOT NULL, data BLOB NOT NULL,
                                      PRIMARY KEY (delivery_id, sequence));
        CREATE TABLE applied_operations (operation_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL);
        CREATE TABLE notifications (notification_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, email TEXT NOT NULL, sms TEXT NOT NULL);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, data BLOB NOT NULL);
        """,
        // Flights still to abort (an ended delivery's, while flight control cannot be reached),
        // and when each delivery last heard from its drone (a silent flight is lost). Existing
        // deliveries start a fresh silence window.
        """
        CREATE TABLE flight_aborts (delivery_id TEXT PRIMARY KEY, reason TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt REAL NOT NULL);
        ALTER TABLE deliveries ADD COLUMN update_time REAL NOT NULL DEFAULT 0;
        UPDATE deliveries SET update_time = CAST(strftime('%s', 'now') AS REAL);
        CREATE INDEX deliveries_in_flight ON deliveries (stage, update_time);
        """,
        // Leases of the loops one replica runs for all (outbox relay, flight aborts, flight watch).
        SQLLeaseStore.sqliteTable,
        // The last position report taken from the current flight (late reports are dropped).
        "ALTER TABLE deliveries ADD COLUMN position_sequence INTEGER NOT NULL DEFAULT 0;",
    ], postgres: [
        """
        CREATE TABLE deliveries (delivery_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, user_id TEXT NOT NULL,
                                 stage BIGINT NOT NULL, create_time DOUBLE PRECISION NOT NULL, arrived BIGINT NOT NULL,
                                 last_sequence BIGINT NOT NULL, revision BIGINT NOT NULL, picked_up BIGINT NOT NULL,
                                 data BYTEA NOT NULL, status BYTEA NOT NULL, update_time DOUBLE PRECISION NOT NULL DEFAULT 0);
        CREATE INDEX deliveries_owner ON deliveries (owner_id, create_time);
        CREATE INDEX deliveries_in_flight ON deliveries (stage, update_time);
        CREATE TABLE tracking_events (delivery_id TEXT NOT NULL, sequence BIGINT NOT NULL, data BYTEA NOT NULL,
                                      PRIMARY KEY (delivery_id, sequence));
        CREATE TABLE applied_operations (operation_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL);
        CREATE TABLE notifications (notification_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, email TEXT NOT NULL, sms TEXT NOT NULL);
        CREATE TABLE outbox (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, data BYTEA NOT NULL);
        CREATE TABLE flight_aborts (delivery_id TEXT PRIMARY KEY, reason TEXT NOT NULL, attempts BIGINT NOT NULL,
                                    next_attempt DOUBLE PRECISION NOT NULL);
        """,
        SQLLeaseStore.postgresTable,
        "ALTER TABLE deliveries ADD COLUMN position_sequence BIGINT NOT NULL DEFAULT 0;",
    ])

    /// Opens the store where `location` says (blocking: call at start or off the cooperative pool).
    public init(_ location: any DatabaseLocation) throws {
        database = try location.open(Self.schema)
        leases = SQLLeaseStore(database: database)
    }

    /// The embedded default: a SQLite file.
    public convenience init(path: String) throws {
        try self.init(SQLiteLocation(path: path))
    }

    static func load(_ row: Row) throws -> DeliveryRecord {
        var record = DeliveryRecord(delivery: try DeliveryV1.Delivery(storedBytes: row.bytes(0), what: "delivery"),
                                    status: try DeliveryV1.DeliveryStatus(storedBytes: row.bytes(1), what: "delivery status"))
        record.arrived = row.bool(2)
        record.lastSequence = row.int(3)
        record.revision = Int(row.int(4))
        record.pickedUp = row.bool(5)
        record.positionSequence = row.int(6)
        return record
    }

    static let selectRecord = "SELECT data, status, arrived, last_sequence, revision, picked_up, position_sequence FROM deliveries WHERE delivery_id = ?"

    public func record(id: String) async throws -> DeliveryRecord? {
        try await database.read { db in try db.queryFirst(Self.selectRecord, [.text(id)]).map(Self.load) }
    }

    public func list(ownerID: String, userID: String, stages: [CommonV1.DeliveryStage], offset: Int, limit: Int) async throws -> [DeliveryV1.Delivery] {
        try await database.read { db in
            var sql = "SELECT data FROM deliveries WHERE 1 = 1"
            var parameters: [SQLValue] = []
            if !ownerID.isEmpty { sql += " AND owner_id = ?"; parameters.append(.text(ownerID)) }
            if !userID.isEmpty { sql += " AND user_id = ?"; parameters.append(.text(userID)) }
            if !stages.isEmpty {
                let list = SQLValue.inList(stages.map { .integer(Int64($0.rawValue)) })
                sql += " AND stage IN " + list.sql
                parameters += list.parameters
            }
            sql += " ORDER BY create_time, delivery_id LIMIT ? OFFSET ?"
            parameters += [.int(limit), .int(offset)]
            return try db.query(sql, parameters).map { try DeliveryV1.Delivery(storedBytes: $0.bytes(0), what: "delivery") }
        }
    }

    public func update(id: String, operationID: String?, trace: CommonV1.TraceContext?,
                       _ change: @escaping @Sendable (DeliveryRecord?) throws -> DeliveryChange?) async throws -> (record: DeliveryRecord?, tracking: [DeliveryV1.DeliveryTrackingEvent]) {
        // Read-modify-write of one delivery, which may not exist yet: two replicas handling
        // positions or commands for it run one after the other (PostgreSQL: advisory lock).
        try await database.write(locking: ["delivery:" + id]) { db in
            let current = try db.queryFirst(Self.selectRecord, [.text(id)]).map(Self.load)
            if let operationID, !operationID.isEmpty,
               try db.queryFirst("SELECT 1 FROM applied_operations WHERE operation_id = ?", [.text(operationID)]) != nil {
                return (current, [])
            }
            guard var result = try change(current) else { return (current, []) }
            var record = result.record
            for index in result.tracking.indices {
                record.lastSequence += 1
                result.tracking[index].sequence = record.lastSequence
                result.tracking[index].deliveryId = id
                try db.run("INSERT INTO tracking_events (delivery_id, sequence, data) VALUES (?, ?, ?)",
                           [.text(id), .integer(record.lastSequence), .blob(result.tracking[index].serializedBytes())])
            }
            for (index, reason) in result.domainEvents {
                let tracking = result.tracking[index]
                var event = DeliveryV1.DeliveryEvent()
                event.eventId = "\(id)-\(tracking.sequence)"
                event.deliveryId = id
                event.stage = tracking.stage
                event.eventTime = tracking.time
                event.owner = record.delivery.owner
                event.location = tracking.location
                event.droneId = record.delivery.droneId
                event.reason = reason
                event.delivery = record.delivery
                event.sequence = tracking.sequence
                event.traceContext = trace
                event.droneLost = result.droneLost
                try db.run("INSERT INTO outbox (event_id, data) VALUES (?, ?)", [.text(event.eventId), .blob(event.serializedBytes())])
            }
            if let reason = result.flightToAbort {
                try db.run("""
                    INSERT INTO flight_aborts (delivery_id, reason, attempts, next_attempt) VALUES (?, ?, 0, 0)
                    ON CONFLICT (delivery_id) DO UPDATE SET reason = excluded.reason, attempts = 0, next_attempt = 0
                    """, [.text(id), .text(reason)])
            }
            record.delivery.stage = record.status.stage
            try db.run("""
                INSERT INTO deliveries (delivery_id, owner_id, user_id, stage, create_time, arrived, last_sequence, revision, picked_up, data, status,
                                        update_time, position_sequence)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (delivery_id) DO UPDATE SET owner_id = excluded.owner_id, user_id = excluded.user_id, stage = excluded.stage,
                    create_time = excluded.create_time, arrived = excluded.arrived, last_sequence = excluded.last_sequence,
                    revision = excluded.revision, picked_up = excluded.picked_up, data = excluded.data, status = excluded.status,
                    update_time = excluded.update_time, position_sequence = excluded.position_sequence
                """, [.text(id), .text(record.delivery.owner?.accountId ?? ""), .text(record.delivery.owner?.userId ?? ""),
                      .integer(Int64(record.status.stage.rawValue)), .real(record.delivery.createTime?.secondsSince1970 ?? 0),
                      .bool(record.arrived), .integer(record.lastSequence), .int(record.revision), .bool(record.pickedUp),
                      .blob(record.delivery.serializedBytes()), .blob(record.status.serializedBytes()),
                      .real(record.status.updateTime?.secondsSince1970 ?? Date().timeIntervalSince1970), .integer(record.positionSequence)])
            if let operationID, !operationID.isEmpty {
                try db.run("INSERT INTO applied_operations (operation_id, delivery_id) VALUES (?, ?)", [.text(operationID), .text(id)])
            }
            return (record, result.tracking)
        }
    }

    public func trackingEvents(deliveryID: String, after sequence: Int64) async throws -> [DeliveryV1.DeliveryTrackingEvent] {
        try await database.read { db in
            try db.query("SELECT data FROM tracking_events WHERE delivery_id = ? AND sequence > ? ORDER BY sequence", [.text(deliveryID), .integer(sequence)])
                .map { try DeliveryV1.DeliveryTrackingEvent(storedBytes: $0.bytes(0), what: "tracking event") }
        }
    }

    public func addNotification(id: String, deliveryID: String, email: String, sms: String) async throws {
        try await database.write { db in
            try db.run("INSERT INTO notifications (notification_id, delivery_id, email, sms) VALUES (?, ?, ?, ?)", [.text(id), .text(deliveryID), .text(email), .text(sms)])
        }
    }

    public func outbox(limit: Int) async throws -> [(id: String, event: DeliveryV1.DeliveryEvent)] {
        try await database.read { db in
            try db.query("SELECT event_id, data FROM outbox ORDER BY seq LIMIT ?", [.int(limit)]).map {
                ($0.string(0), try DeliveryV1.DeliveryEvent(storedBytes: $0.bytes(1), what: "outbox event"))
            }
        }
    }

    public func removeFromOutbox(ids: [String]) async throws {
        try await database.write { db in
            for id in ids { try db.run("DELETE FROM outbox WHERE event_id = ?", [.text(id)]) }
        }
    }

    public func flightAborts(dueAt now: Double, limit: Int) async throws -> [(deliveryID: String, reason: String, attempts: Int)] {
        try await database.read { db in
            try db.query("SELECT delivery_id, reason, attempts FROM flight_aborts WHERE next_attempt <= ? ORDER BY next_attempt LIMIT ?", [.real(now), .int(limit)])
                .map { ($0.string(0), $0.string(1), Int($0.int(2))) }
        }
    }

    public func flightAbort(deliveryID: String) async throws -> (reason: String, attempts: Int)? {
        try await database.read { db in
            try db.queryFirst("SELECT reason, attempts FROM flight_aborts WHERE delivery_id = ?", [.text(deliveryID)]).map { ($0.string(0), Int($0.int(1))) }
        }
    }

    public func finishFlightAbort(deliveryID: String) async throws {
        try await database.write { db in try db.run("DELETE FROM flight_aborts WHERE delivery_id = ?", [.text(deliveryID)]) }
    }

    public func postponeFlightAbort(deliveryID: String, next: Double) async throws {
        try await database.write { db in
            try db.run("UPDATE flight_aborts SET attempts = attempts + 1, next_attempt = ? WHERE delivery_id = ?", [.real(next), .text(deliveryID)])
        }
    }

    public func silentFlights(before: Double, limit: Int) async throws -> [String] {
        let inFlight = SQLValue.inList([CommonV1.DeliveryStage.created, .rescheduled, .headedToPickup, .headedToDropoff].map { .integer(Int64($0.rawValue)) })
        return try await database.read { db in
            try db.query("SELECT delivery_id FROM deliveries WHERE stage IN \(inFlight.sql) AND update_time < ? AND arrived = 0 ORDER BY update_time LIMIT ?",
                         inFlight.parameters + [.real(before), .int(limit)]).map { $0.string(0) }
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteDeliveryStore = SQLDeliveryStore
