import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit
import Storage

/// What Drone Scheduler needs from storage. Assignment happens inside the store, in one
/// transaction, because "never one drone twice" is a property of the data: the SQLite store also
/// enforces it with a unique index on the active assignment per drone.
public protocol DroneStore: Sendable {
    /// Creates or replaces a drone's description, keeping its status and current delivery if it is busy.
    func upsert(_ drone: DroneSchedulerV1.Drone) async throws -> (drone: DroneSchedulerV1.Drone, created: Bool)
    func drones(status: DroneSchedulerV1.DroneStatus?, offset: Int, limit: Int) async throws -> [DroneSchedulerV1.Drone]
    /// The assignment for the delivery if one exists, else the nearest available drone `choose`
    /// picks, assigned atomically. Returns nil when no drone qualifies.
    func assign(_ request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp,
                choose: @escaping @Sendable ([DroneSchedulerV1.Drone]) -> DroneSchedulerV1.Drone?) async throws -> (assignment: DroneSchedulerV1.Assignment, created: Bool)?
    /// Ends an active assignment and frees the drone (at `position`, if known).
    func release(deliveryID: String, reason: String, now: Timestamp, position: CommonV1.Location?) async throws -> (assignment: DroneSchedulerV1.Assignment, released: Bool)?
    func assignment(deliveryID: String) async throws -> DroneSchedulerV1.Assignment?
    /// Sum of route distance (meters) and assigned time (seconds) over the owner's assignments
    /// that started in [start, end).
    func utilization(ownerID: String, start: Double, end: Double, now: Double) async throws -> (meters: Double, seconds: Double)
}

public final class SQLiteDroneStore: DroneStore {
    let database: SQLiteDatabase

    public init(path: String) throws {
        database = try SQLiteDatabase(path: path, migrations: [
            """
            CREATE TABLE drones (drone_id TEXT PRIMARY KEY, status INTEGER NOT NULL, data BLOB NOT NULL);
            CREATE TABLE assignments (delivery_id TEXT PRIMARY KEY, drone_id TEXT NOT NULL REFERENCES drones(drone_id),
                                      owner_id TEXT NOT NULL, active INTEGER NOT NULL, assign_time REAL NOT NULL,
                                      release_time REAL, route_meters REAL NOT NULL, completed INTEGER NOT NULL DEFAULT 0,
                                      data BLOB NOT NULL);
            CREATE UNIQUE INDEX one_active_assignment_per_drone ON assignments (drone_id) WHERE active = 1;
            CREATE INDEX assignments_owner ON assignments (owner_id, assign_time);
            """,
        ])
    }

    public func upsert(_ drone: DroneSchedulerV1.Drone) async throws -> (drone: DroneSchedulerV1.Drone, created: Bool) {
        try await database.write { db in
            var drone = drone
            var created = true
            if let row = try db.queryFirst("SELECT data FROM drones WHERE drone_id = ?", [.text(drone.droneId)]) {
                let existing = try DroneSchedulerV1.Drone(storedBytes: row.bytes(0), what: "drone")
                created = false
                drone.registerTime = existing.registerTime
                if existing.status == .assigned {
                    drone.status = .assigned
                    drone.currentDeliveryId = existing.currentDeliveryId
                    drone.position = existing.position
                }
            }
            try Self.save(drone, db)
            return (drone, created)
        }
    }

    static func save(_ drone: DroneSchedulerV1.Drone, _ db: SQLiteConnection) throws {
        try db.run("INSERT OR REPLACE INTO drones (drone_id, status, data) VALUES (?, ?, ?)",
                   [.text(drone.droneId), .integer(Int64(drone.status.rawValue)), .blob(drone.serializedBytes())])
    }

    public func drones(status: DroneSchedulerV1.DroneStatus?, offset: Int, limit: Int) async throws -> [DroneSchedulerV1.Drone] {
        try await database.read { db in
            let rows = if let status {
                try db.query("SELECT data FROM drones WHERE status = ? ORDER BY drone_id LIMIT ? OFFSET ?", [.integer(Int64(status.rawValue)), .int(limit), .int(offset)])
            } else {
                try db.query("SELECT data FROM drones ORDER BY drone_id LIMIT ? OFFSET ?", [.int(limit), .int(offset)])
            }
            return try rows.map { try DroneSchedulerV1.Drone(storedBytes: $0.bytes(0), what: "drone") }
        }
    }

    public func assign(_ request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp,
                       choose: @escaping @Sendable ([DroneSchedulerV1.Drone]) -> DroneSchedulerV1.Drone?) async throws -> (assignment: DroneSchedulerV1.Assignment, created: Bool)? {
        try await database.write { db in
            if let row = try db.queryFirst("SELECT data FROM assignments WHERE delivery_id = ?", [.text(request.deliveryId)]) {
                return (try DroneSchedulerV1.Assignment(storedBytes: row.bytes(0), what: "assignment"), false)
            }
            let available = try db.query("SELECT data FROM drones WHERE status = ?", [.integer(Int64(DroneSchedulerV1.DroneStatus.available.rawValue))])
                .map { try DroneSchedulerV1.Drone(storedBytes: $0.bytes(0), what: "drone") }
            guard var drone = choose(available) else { return nil }
            var assignment = DroneSchedulerV1.Assignment()
            assignment.deliveryId = request.deliveryId
            assignment.droneId = drone.droneId
            assignment.owner = request.owner
            assignment.state = .active
            assignment.assignTime = now
            let start = drone.position ?? drone.homeLocation ?? CommonV1.Location()
            let route = start.distance(to: request.pickupLocation ?? start) + (request.pickupLocation ?? start).distance(to: request.dropoffLocation ?? start)
            try db.run("INSERT INTO assignments (delivery_id, drone_id, owner_id, active, assign_time, route_meters, data) VALUES (?, ?, ?, 1, ?, ?, ?)",
                       [.text(request.deliveryId), .text(drone.droneId), .text(request.owner?.accountId ?? ""), .real(now.secondsSince1970),
                        .real(route), .blob(assignment.serializedBytes())])
            drone.status = .assigned
            drone.currentDeliveryId = request.deliveryId
            try Self.save(drone, db)
            return (assignment, true)
        }
    }

    public func release(deliveryID: String, reason: String, now: Timestamp, position: CommonV1.Location?) async throws -> (assignment: DroneSchedulerV1.Assignment, released: Bool)? {
        try await database.write { db in
            guard let row = try db.queryFirst("SELECT data FROM assignments WHERE delivery_id = ?", [.text(deliveryID)]) else { return nil }
            var assignment = try DroneSchedulerV1.Assignment(storedBytes: row.bytes(0), what: "assignment")
            guard assignment.state == .active else { return (assignment, false) }
            assignment.state = .released
            assignment.releaseTime = now
            assignment.releaseReason = reason
            try db.run("UPDATE assignments SET active = 0, release_time = ?, completed = ?, data = ? WHERE delivery_id = ?",
                       [.real(now.secondsSince1970), .bool(reason == DroneSchedulerServiceLogic.completedReason), .blob(assignment.serializedBytes()), .text(deliveryID)])
            if let droneRow = try db.queryFirst("SELECT data FROM drones WHERE drone_id = ?", [.text(assignment.droneId)]) {
                var drone = try DroneSchedulerV1.Drone(storedBytes: droneRow.bytes(0), what: "drone")
                if drone.currentDeliveryId == deliveryID {
                    drone.status = .available
                    drone.currentDeliveryId = ""
                    if let position {
                        drone.position = position
                        drone.positionTime = now
                    }
                    try Self.save(drone, db)
                }
            }
            return (assignment, true)
        }
    }

    public func assignment(deliveryID: String) async throws -> DroneSchedulerV1.Assignment? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM assignments WHERE delivery_id = ?", [.text(deliveryID)]).map { try DroneSchedulerV1.Assignment(storedBytes: $0.bytes(0), what: "assignment") }
        }
    }

    public func utilization(ownerID: String, start: Double, end: Double, now: Double) async throws -> (meters: Double, seconds: Double) {
        try await database.read { db in
            // Route distance counts for assignments that ran to completion; time counts for all,
            // active ones up to now.
            let row = try db.queryFirst("""
                SELECT COALESCE(SUM(route_meters * completed), 0), COALESCE(SUM(COALESCE(release_time, ?) - assign_time), 0)
                FROM assignments WHERE owner_id = ? AND assign_time >= ? AND assign_time < ?
                """, [.real(now), .text(ownerID), .real(start), .real(end)])
            return (row?.double(0) ?? 0, row?.double(1) ?? 0)
        }
    }
}
