import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit
import Storage

/// What became of an assignment request.
public enum AssignOutcome: Sendable, Equatable {
    /// The delivery has this active assignment (`created`: made by this call).
    case assigned(DroneSchedulerV1.Assignment, created: Bool)
    /// No suitable drone is free; the delivery waits in line at `position` (1 = next).
    case waiting(position: Int)
    /// No suitable drone is free and the caller did not want to wait.
    case noDroneFree
    /// The request's own assignment was released, or it left the line: never handed out again.
    case released(reason: String)
    /// It waited until its `wait_until` without getting a drone, and left the line.
    case expired
    /// No drone of the fleet could ever carry the package.
    case noneCanCarry
}

/// What Drone Scheduler needs from storage. Assignment happens inside the store, in one
/// transaction, because "never one drone twice" is a property of the data: the SQLite store also
/// enforces it with unique indexes on the active assignment per drone and per delivery.
///
/// Deliveries that find every suitable drone busy wait in a durable line, ordered by the time
/// they were accepted; a released drone goes to the first delivery in line it can carry, in the
/// transaction that releases it.
public protocol DroneStore: Sendable {
    /// Creates or replaces a drone's description, keeping its status and current delivery if it
    /// is busy; a drone that becomes available goes to the line first.
    func upsert(_ drone: DroneSchedulerV1.Drone) async throws -> (drone: DroneSchedulerV1.Drone, created: Bool)
    func drones(status: DroneSchedulerV1.DroneStatus?, offset: Int, limit: Int) async throws -> [DroneSchedulerV1.Drone]
    /// The delivery's active assignment if it has one; else, once the line ahead of it is
    /// served, the nearest available drone that can carry it, assigned atomically; else a place
    /// in line (with `request.wait`).
    func assign(_ request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp) async throws -> AssignOutcome
    /// Ends the delivery's active assignment and frees the drone (at `position`, if known; out of
    /// service if `lost`), which then goes to the line; or takes the delivery out of the line.
    /// With `startedBefore`, only an assignment made before that time ends (an event about an
    /// earlier attempt must not end a fresh one). Nil when the delivery never had either.
    func release(deliveryID: String, reason: String, now: Timestamp, position: CommonV1.Location?, lost: Bool,
                 startedBefore: Timestamp?) async throws -> ReleaseOutcome?
    /// The delivery's latest assignment.
    func assignment(deliveryID: String) async throws -> DroneSchedulerV1.Assignment?
    /// Sum of route distance (meters) and assigned time (seconds) over the owner's assignments
    /// that started in [start, end).
    func utilization(ownerID: String, start: Double, end: Double, now: Double) async throws -> (meters: Double, seconds: Double)
    /// Keeps each drone's latest reported position (TelemetryService), in one short write that
    /// holds no fleet-wide lock: one conditional upsert per report on the drone's own row. A
    /// report is taken when it is newer than the stored one: within one flight (the same
    /// `delivery_id` and `flight_id`) a higher sequence, or an unnumbered one (sequence 0) with a
    /// later time; from another flight, a later time. Anything else (a duplicate, a late report)
    /// is dropped. Drones that are not registered are kept too. A report without a time is taken
    /// as made at `receivedAt`. Returns, for each drone of `reports`, the highest sequence stored
    /// for its latest flight.
    func recordPositions(_ reports: [TelemetryV1.DronePosition], receivedAt: Timestamp) async throws -> [String: Int64]
}

extension DroneSchedulerV1.Drone {
    /// Whether the drone can carry the package: enough capacity, large enough for its size.
    public func canCarry(_ package: CommonV1.PackageInfo) -> Bool {
        capacityKg >= package.weight && maxPackageSize.rawValue >= package.size.rawValue
    }
}

/// What a release did.
public struct ReleaseOutcome: Sendable {
    /// The delivery's latest assignment after the call (nil if it only waited in line).
    public var assignment: DroneSchedulerV1.Assignment?
    /// An active assignment was ended by this call.
    public var released: Bool
    /// The delivery was waiting in line and left it.
    public var withdrawn: Bool
}

/// The fleet, assignments and the waiting line in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLDroneStore: DroneStore {
    let database: any SQLDatabase

    /// How many drones are in each status (for the metrics endpoint).
    public func countsByStatus() async throws -> [Int64: Int] {
        try await database.groupCounts("SELECT status, COUNT(*) FROM drones GROUP BY status")
    }

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE drones (drone_id TEXT PRIMARY KEY, status INTEGER NOT NULL, data BLOB NOT NULL);
        CREATE TABLE assignments (delivery_id TEXT PRIMARY KEY, drone_id TEXT NOT NULL REFERENCES drones(drone_id),
                                  owner_id TEXT NOT NULL, active INTEGER NOT NULL, assign_time REAL NOT NULL,
                                  release_time REAL, route_meters REAL NOT NULL, completed INTEGER NOT NULL DEFAULT 0,
                                  data BLOB NOT NULL);
        CREATE UNIQUE INDEX one_active_assignment_per_drone ON assignments (drone_id) WHERE active = 1;
        CREATE INDEX assignments_owner ON assignments (owner_id, assign_time);
        """,
        // A delivery may be assigned again after its assignment was released (a retried saga):
        // one row per assignment, at most one active per delivery and per drone. The line of
        // deliveries waiting for a drone, in order of acceptance.
        """
        CREATE TABLE assignments_v2 (assignment_id INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL,
                                     request_key TEXT NOT NULL, drone_id TEXT NOT NULL REFERENCES drones(drone_id),
                                     owner_id TEXT NOT NULL, active INTEGER NOT NULL, assign_time REAL NOT NULL,
                                     release_time REAL, route_meters REAL NOT NULL, completed INTEGER NOT NULL DEFAULT 0,
                                     data BLOB NOT NULL);
        INSERT INTO assignments_v2 (delivery_id, request_key, drone_id, owner_id, active, assign_time, release_time, route_meters, completed, data)
            SELECT delivery_id, '', drone_id, owner_id, active, assign_time, release_time, route_meters, completed, data
            FROM assignments ORDER BY assign_time;
        DROP TABLE assignments;
        ALTER TABLE assignments_v2 RENAME TO assignments;
        CREATE UNIQUE INDEX one_active_assignment_per_drone ON assignments (drone_id) WHERE active = 1;
        CREATE UNIQUE INDEX one_active_assignment_per_delivery ON assignments (delivery_id) WHERE active = 1;
        CREATE INDEX assignments_delivery ON assignments (delivery_id, assignment_id);
        CREATE INDEX assignments_owner ON assignments (owner_id, assign_time);
        CREATE TABLE waiting (seq INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE, request_key TEXT NOT NULL,
                              queued_time REAL NOT NULL, enter_time REAL NOT NULL, wait_until REAL, withdrawn TEXT,
                              request BLOB NOT NULL);
        CREATE INDEX waiting_line ON waiting (withdrawn, queued_time, seq);
        """,
        // Each drone's latest reported position (TelemetryService), apart from the drones row:
        // reports are frequent, and a row of its own per drone lets them be written without the
        // fleet lock that assignment holds. `data` is the report (DronePosition, time filled in).
        """
        CREATE TABLE drone_positions (drone_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, flight_id TEXT NOT NULL,
                                      sequence INTEGER NOT NULL, report_time REAL NOT NULL, data BLOB NOT NULL);
        """,
    ], postgres: [
        """
        CREATE TABLE drones (drone_id TEXT PRIMARY KEY, status BIGINT NOT NULL, data BYTEA NOT NULL);
        CREATE TABLE assignments (assignment_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, delivery_id TEXT NOT NULL,
                                  request_key TEXT NOT NULL, drone_id TEXT NOT NULL REFERENCES drones(drone_id),
                                  owner_id TEXT NOT NULL, active BIGINT NOT NULL, assign_time DOUBLE PRECISION NOT NULL,
                                  release_time DOUBLE PRECISION, route_meters DOUBLE PRECISION NOT NULL, completed BIGINT NOT NULL DEFAULT 0,
                                  data BYTEA NOT NULL);
        CREATE UNIQUE INDEX one_active_assignment_per_drone ON assignments (drone_id) WHERE active = 1;
        CREATE UNIQUE INDEX one_active_assignment_per_delivery ON assignments (delivery_id) WHERE active = 1;
        CREATE INDEX assignments_delivery ON assignments (delivery_id, assignment_id);
        CREATE INDEX assignments_owner ON assignments (owner_id, assign_time);
        CREATE TABLE waiting (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE, request_key TEXT NOT NULL,
                              queued_time DOUBLE PRECISION NOT NULL, enter_time DOUBLE PRECISION NOT NULL, wait_until DOUBLE PRECISION,
                              withdrawn TEXT, request BYTEA NOT NULL);
        CREATE INDEX waiting_line ON waiting (withdrawn, queued_time, seq);
        """,
        """
        CREATE TABLE drone_positions (drone_id TEXT PRIMARY KEY, delivery_id TEXT NOT NULL, flight_id TEXT NOT NULL,
                                      sequence BIGINT NOT NULL, report_time DOUBLE PRECISION NOT NULL, data BYTEA NOT NULL);
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

    /// Whatever serves the line or joins it holds this one key: releasing, registering, and an
    /// assignment that finds no free drone for itself, or one for a delivery in line that a free
    /// drone could carry. They read the whole line and the free fleet (the first delivery in line
    /// that a freed drone can carry), so on PostgreSQL two replicas run them one after the other,
    /// as SQLite's single writer does; without it, a delivery joining the line and a drone freed
    /// at the same moment could miss each other. An assignment that finds a free drone for itself
    /// does not take it: it claims the drone by its row (`assignOutsideLine`, `claim`); nor does
    /// a delivery in line that asks again while no free drone can carry it.
    static let fleetKey = "fleet"

    /// Serializes one delivery's assignment requests and releases (two replicas asked at once
    /// for the same delivery run one after the other). Taken before `fleetKey`.
    static func deliveryKey(_ deliveryID: String) -> String { "drone-assignment:" + deliveryID }

    public func upsert(_ drone: DroneSchedulerV1.Drone) async throws -> (drone: DroneSchedulerV1.Drone, created: Bool) {
        try await database.write(locking: [Self.fleetKey]) { db in
            // The row first, locked: an assignment that claims this drone without the fleet key
            // (`claim`) commits before this reads it, or waits for this to commit.
            _ = try db.queryFirst("SELECT status FROM drones WHERE drone_id = ?" + db.dialect.forUpdate, [.text(drone.droneId)])
            var drone = drone
            var created = true
            if let existing = try Self.drone(drone.droneId, db) {
                created = false
                drone.registerTime = existing.registerTime
                if existing.status == .assigned {
                    drone.status = .assigned
                    drone.currentDeliveryId = existing.currentDeliveryId
                    drone.position = existing.position
                }
            }
            try Self.save(drone, db)
            if drone.status == .available { try Self.serveLine(db, now: .now) }
            return (try Self.drone(drone.droneId, db) ?? drone, created)
        }
    }

    static func save(_ drone: DroneSchedulerV1.Drone, _ db: any SQLTransaction) throws {
        try db.run("INSERT INTO drones (drone_id, status, data) VALUES (?, ?, ?) ON CONFLICT (drone_id) DO UPDATE SET status = excluded.status, data = excluded.data",
                   [.text(drone.droneId), .integer(Int64(drone.status.rawValue)), .blob(drone.serializedBytes())])
    }

    static func drone(_ id: String, _ db: any SQLTransaction) throws -> DroneSchedulerV1.Drone? {
        try fleet("WHERE d.drone_id = ?", [.text(id)], db).first
    }

    /// Drones as every read sees them: the row (`d`), with the latest position the drone
    /// reported (`p`, TelemetryService) when that is newer than the one the row holds (its home at
    /// registration, or where a release left it). `clauses`: WHERE, ORDER BY and LIMIT on `d`.
    static func fleet(_ clauses: String, _ parameters: [SQLValue] = [], _ db: any SQLTransaction) throws -> [DroneSchedulerV1.Drone] {
        try db.query("SELECT d.data, p.data, p.report_time FROM drones d LEFT JOIN drone_positions p ON p.drone_id = d.drone_id " + clauses, parameters)
            .map { row in
                var drone = try DroneSchedulerV1.Drone(storedBytes: row.bytes(0), what: "drone")
                if !row.isNull(1), drone.positionTime.map({ $0.secondsSince1970 < row.double(2) }) ?? true {
                    let report = try TelemetryV1.DronePosition(storedBytes: row.bytes(1), what: "drone position")
                    drone.position = report.location
                    drone.positionTime = report.time
                }
                return drone
            }
    }

    public func drones(status: DroneSchedulerV1.DroneStatus?, offset: Int, limit: Int) async throws -> [DroneSchedulerV1.Drone] {
        try await database.read { db in
            if let status {
                try Self.fleet("WHERE d.status = ? ORDER BY d.drone_id LIMIT ? OFFSET ?", [.integer(Int64(status.rawValue)), .int(limit), .int(offset)], db)
            } else {
                try Self.fleet("ORDER BY d.drone_id LIMIT ? OFFSET ?", [.int(limit), .int(offset)], db)
            }
        }
    }

    public func recordPositions(_ reports: [TelemetryV1.DronePosition], receivedAt: Timestamp) async throws -> [String: Int64] {
        // Rows are written in drone-id order (a drone's own reports in the order they came), so
        // two batches at once on PostgreSQL lock their rows in one order and never deadlock.
        let ordered = reports.enumerated().sorted { ($0.element.droneId, $0.offset) < ($1.element.droneId, $1.offset) }.map { entry in
            var report = entry.element
            report.time = report.time ?? receivedAt
            return report
        }
        return try await database.write { db in
            // The same flight: the same delivery and flight id (a new flight numbers from 1 again).
            let sameFlight = "(excluded.delivery_id = drone_positions.delivery_id AND excluded.flight_id = drone_positions.flight_id)"
            for report in ordered {
                try db.run("""
                    INSERT INTO drone_positions (drone_id, delivery_id, flight_id, sequence, report_time, data) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (drone_id) DO UPDATE SET delivery_id = excluded.delivery_id, flight_id = excluded.flight_id,
                        sequence = CASE WHEN \(sameFlight) AND drone_positions.sequence > excluded.sequence THEN drone_positions.sequence
                                        ELSE excluded.sequence END,
                        report_time = excluded.report_time, data = excluded.data
                    WHERE (\(sameFlight) AND (excluded.sequence > drone_positions.sequence
                                              OR (excluded.sequence = 0 AND excluded.report_time > drone_positions.report_time)))
                       OR (NOT \(sameFlight) AND excluded.report_time > drone_positions.report_time)
                    """, [.text(report.droneId), .text(report.deliveryId), .text(report.flightId), .integer(report.sequence),
                          .real((report.time ?? receivedAt).secondsSince1970), .blob(report.serializedBytes())])
            }
            var stored: [String: Int64] = [:]
            for droneID in Set(ordered.map(\.droneId)).sorted() {
                stored[droneID] = try db.queryFirst("SELECT sequence FROM drone_positions WHERE drone_id = ?", [.text(droneID)])?.int(0) ?? 0
            }
            return stored
        }
    }

    public func assign(_ request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp) async throws -> AssignOutcome {
        let deliveryID = request.deliveryId
        return try await database.write(locking: [Self.deliveryKey(deliveryID)]) { db in
            if let outcome = try Self.assignOutsideLine(request, now: now, db) { return outcome }
            try db.lock(Self.fleetKey)
            // Drones that are free go to the line first: after this, nobody in line can use one.
            var free = try Self.serveLine(db, now: now)
            if let active = try Self.assignment(deliveryID, activeOnly: true, db) { return .assigned(active, created: false) }
            if let latest = try Self.assignment(deliveryID, activeOnly: false, db), latest.requestKey == request.requestKey {
                return .released(reason: latest.releaseReason)
            }
            if let place = try db.queryFirst("SELECT seq, request_key, wait_until, withdrawn FROM waiting WHERE delivery_id = ?", [.text(deliveryID)]) {
                let sameRequest = place.string(1) == request.requestKey
                if !place.isNull(3) {
                    if sameRequest { return .released(reason: place.string(3)) }
                    try db.run("DELETE FROM waiting WHERE seq = ?", [.integer(place.int(0))])  // a new request takes its place
                } else {
                    if !place.isNull(2) && place.double(2) <= now.secondsSince1970 {
                        try db.run("UPDATE waiting SET withdrawn = ? WHERE seq = ?", [.text("its wait_until passed"), .integer(place.int(0))])
                        return .expired
                    }
                    if !sameRequest { try db.run("UPDATE waiting SET request_key = ? WHERE seq = ?", [.text(request.requestKey), .integer(place.int(0))]) }
                    return .waiting(position: try Self.position(seq: place.int(0), db))
                }
            }
            let info = request.packageInfo ?? CommonV1.PackageInfo()
            if let assignment = try Self.assignNearest(request, from: &free, now: now, db) { return .assigned(assignment, created: true) }
            let fleet = try Self.fleet("WHERE d.status != ?", [.integer(Int64(DroneSchedulerV1.DroneStatus.retired.rawValue))], db)
            if !fleet.isEmpty && !fleet.contains(where: { $0.canCarry(info) }) { return .noneCanCarry }
            guard request.wait else { return .noDroneFree }
            if let until = request.waitUntil, until.secondsSince1970 <= now.secondsSince1970 { return .expired }
            let inserted = try db.query("""
                INSERT INTO waiting (delivery_id, request_key, queued_time, enter_time, wait_until, request) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq
                """, [.text(deliveryID), .text(request.requestKey), .real((request.queuedTime ?? now).secondsSince1970), .real(now.secondsSince1970),
                      request.waitUntil.map { .real($0.secondsSince1970) } ?? .null, .blob(request.serializedBytes())])
            return .waiting(position: try Self.position(seq: inserted.first?.int(0) ?? 0, db))
        }
    }

    /// Gives free drones to the deliveries waiting in line, first come first served: each in
    /// turn gets the nearest free drone that can carry its package (one that none can use is
    /// skipped over, not blocking the others). Returns the drones still free.
    @discardableResult
    static func serveLine(_ db: any SQLTransaction, now: Timestamp) throws -> [DroneSchedulerV1.Drone] {
        var free = try fleet("WHERE d.status = ?", [.integer(Int64(DroneSchedulerV1.DroneStatus.available.rawValue))], db)
        if free.isEmpty { return free }
        let line = try db.query("SELECT seq, request, wait_until FROM waiting WHERE withdrawn IS NULL ORDER BY queued_time, seq")
        for place in line {
            if free.isEmpty { break }
            if !place.isNull(2) && place.double(2) <= now.secondsSince1970 { continue }  // its caller learns it expired
            let request = try DroneSchedulerV1.AssignDroneRequest(storedBytes: place.bytes(1), what: "waiting request")
            guard try assignNearest(request, from: &free, now: now, db) != nil else { continue }
            try db.run("DELETE FROM waiting WHERE seq = ?", [.integer(place.int(0))])
        }
        return free
    }

    /// An assignment that needs neither the line nor the fleet key: the delivery's active one, a
    /// released one asked for again, for a delivery that has no place in the line (not even one
    /// it left) the nearest free drone that can carry the package, claimed by its row, or for one
    /// waiting in line with no free drone it could use, its place. Nil: the caller takes the
    /// fleet key and decides with the line (serve it, join it, or refuse).
    ///
    /// A free drone found here is one that nobody in line can carry: whatever frees a drone or
    /// joins the line holds the fleet key and serves the line in the same transaction, so a
    /// newcomer that takes a free drone takes it from nobody waiting.
    static func assignOutsideLine(_ request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp,
                                  _ db: any SQLTransaction) throws -> AssignOutcome? {
        let deliveryID = request.deliveryId
        // The place first, then the assignments, each read once: without the fleet key, a release
        // may serve this delivery from the line between two statements, deleting its place and
        // adding its assignment in one commit. Read in this order, a place gone means its
        // assignment shows; read the other way round (or the latest assignment read twice), the
        // new assignment could show as an earlier one of the same request, "released".
        let place = try db.queryFirst("SELECT seq, request_key, wait_until, withdrawn FROM waiting WHERE delivery_id = ?", [.text(deliveryID)])
        if let latest = try assignment(deliveryID, activeOnly: false, db) {
            if latest.state == .active { return .assigned(latest, created: false) }
            if latest.requestKey == request.requestKey { return .released(reason: latest.releaseReason) }
        }
        var free = try fleet("WHERE d.status = ?", [.integer(Int64(DroneSchedulerV1.DroneStatus.available.rawValue))], db)
        guard let place else { return try assignNearest(request, from: &free, now: now, db).map { .assigned($0, created: true) } }
        // A delivery in line asking again (Workflow asks until it has a drone): while no free
        // drone can carry its package there is nothing to serve, and its place is all it gets,
        // read without the fleet key. Otherwise (a free drone it could use: a drone freed by a
        // transaction that failed before serving the line; a place it left, or whose wait ended;
        // another request key) the caller takes the key and decides with the line.
        let info = request.packageInfo ?? CommonV1.PackageInfo()
        guard place.isNull(3), place.string(1) == request.requestKey, place.isNull(2) || place.double(2) > now.secondsSince1970,
              !free.contains(where: { $0.canCarry(info) }) else { return nil }
        return .waiting(position: try position(seq: place.int(0), db))
    }

    /// Assigns the nearest drone of `free` that can carry the request's package, and takes it
    /// out of `free`. A drone that another transaction claimed since `free` was read is taken
    /// out too, and the next nearest tried. Nil when none is left.
    static func assignNearest(_ request: DroneSchedulerV1.AssignDroneRequest, from free: inout [DroneSchedulerV1.Drone], now: Timestamp,
                              _ db: any SQLTransaction) throws -> DroneSchedulerV1.Assignment? {
        let info = request.packageInfo ?? CommonV1.PackageInfo()
        let pickup = request.pickupLocation ?? CommonV1.Location()
        var candidates = free.filter { $0.canCarry(info) }
        while let drone = nearest(candidates, to: pickup) {
            candidates.removeAll { $0.droneId == drone.droneId }
            free.removeAll { $0.droneId == drone.droneId }
            if let assignment = try claim(drone, for: request, now: now, db) { return assignment }
        }
        return nil
    }

    static func nearest(_ drones: [DroneSchedulerV1.Drone], to pickup: CommonV1.Location) -> DroneSchedulerV1.Drone? {
        drones.min { a, b in
            let da = (a.position ?? a.homeLocation ?? pickup).distance(to: pickup)
            let db = (b.position ?? b.homeLocation ?? pickup).distance(to: pickup)
            return da == db ? a.droneId < b.droneId : da < db
        }
    }

    /// Makes `drone` (as read, with its latest position) the request's, if it is still available:
    /// its row is changed only where its status is still available and no other transaction
    /// holds it (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two replicas that picked the same drone
    /// do not wait for each other: the second finds nothing to claim and picks again). The row's
    /// description is the stored one, read in the same statement, so a registration that
    /// committed since `drone` was read is kept. Nil: another transaction has the drone.
    static func claim(_ drone: DroneSchedulerV1.Drone, for request: DroneSchedulerV1.AssignDroneRequest, now: Timestamp,
                      _ db: any SQLTransaction) throws -> DroneSchedulerV1.Assignment? {
        let available = Int64(DroneSchedulerV1.DroneStatus.available.rawValue), assigned = Int64(DroneSchedulerV1.DroneStatus.assigned.rawValue)
        guard let row = try db.queryFirst("""
            UPDATE drones SET status = ? WHERE drone_id = (SELECT drone_id FROM drones WHERE drone_id = ? AND status = ?\(db.dialect.skipLocked)) RETURNING data
            """, [.integer(assigned), .text(drone.droneId), .integer(available)]) else { return nil }
        var stored = try DroneSchedulerV1.Drone(storedBytes: row.bytes(0), what: "drone")
        stored.position = drone.position
        stored.positionTime = drone.positionTime
        var assignment = DroneSchedulerV1.Assignment()
        assignment.deliveryId = request.deliveryId
        assignment.droneId = drone.droneId
        assignment.owner = request.owner
        assignment.state = .active
        assignment.assignTime = now
        assignment.requestKey = request.requestKey
        let start = drone.position ?? drone.homeLocation ?? CommonV1.Location()
        let route = start.distance(to: request.pickupLocation ?? start) + (request.pickupLocation ?? start).distance(to: request.dropoffLocation ?? start)
        try db.run("""
            INSERT INTO assignments (delivery_id, request_key, drone_id, owner_id, active, assign_time, route_meters, data) VALUES (?, ?, ?, ?, 1, ?, ?, ?)
            """, [.text(request.deliveryId), .text(request.requestKey), .text(drone.droneId), .text(request.owner?.accountId ?? ""),
                  .real(now.secondsSince1970), .real(route), .blob(assignment.serializedBytes())])
        stored.status = .assigned
        stored.currentDeliveryId = request.deliveryId
        try save(stored, db)
        return assignment
    }

    static func position(seq: Int64, _ db: any SQLTransaction) throws -> Int {
        let row = try db.queryFirst("""
            SELECT COUNT(*) FROM waiting w, waiting me WHERE me.seq = ? AND w.withdrawn IS NULL
              AND (w.queued_time < me.queued_time OR (w.queued_time = me.queued_time AND w.seq < me.seq))
            """, [.integer(seq)])
        return Int(row?.int(0) ?? 0) + 1
    }

    static func assignment(_ deliveryID: String, activeOnly: Bool, _ db: any SQLTransaction) throws -> DroneSchedulerV1.Assignment? {
        let sql = activeOnly ? "SELECT data FROM assignments WHERE delivery_id = ? AND active = 1"
                             : "SELECT data FROM assignments WHERE delivery_id = ? ORDER BY assignment_id DESC LIMIT 1"
        return try db.queryFirst(sql, [.text(deliveryID)]).map { try DroneSchedulerV1.Assignment(storedBytes: $0.bytes(0), what: "assignment") }
    }

    public func release(deliveryID: String, reason: String, now: Timestamp, position: CommonV1.Location?, lost: Bool,
                        startedBefore: Timestamp?) async throws -> ReleaseOutcome? {
        try await database.write(locking: [Self.deliveryKey(deliveryID), Self.fleetKey]) { db in
            var outcome = ReleaseOutcome(assignment: nil, released: false, withdrawn: false)
            let limit = startedBefore?.secondsSince1970 ?? .infinity
            if let row = try db.queryFirst("SELECT assignment_id, data, assign_time FROM assignments WHERE delivery_id = ? AND active = 1", [.text(deliveryID)]),
               row.double(2) <= limit {
                var assignment = try DroneSchedulerV1.Assignment(storedBytes: row.bytes(1), what: "assignment")
                assignment.state = .released
                assignment.releaseTime = now
                assignment.releaseReason = reason
                try db.run("UPDATE assignments SET active = 0, release_time = ?, completed = ?, data = ? WHERE assignment_id = ?",
                           [.real(now.secondsSince1970), .bool(reason == DroneSchedulerServiceLogic.completedReason), .blob(assignment.serializedBytes()),
                            .integer(row.int(0))])
                if var drone = try Self.drone(assignment.droneId, db), drone.currentDeliveryId == deliveryID {
                    // A drone that stopped reporting is out of service until it registers again.
                    drone.status = lost ? .offline : .available
                    drone.currentDeliveryId = ""
                    if let position {
                        drone.position = position
                        drone.positionTime = now
                    }
                    try Self.save(drone, db)
                    if !lost { try Self.serveLine(db, now: now) }
                }
                outcome.released = true
            }
            outcome.assignment = try Self.assignment(deliveryID, activeOnly: false, db)
            if let place = try db.queryFirst("SELECT seq, enter_time, withdrawn FROM waiting WHERE delivery_id = ?", [.text(deliveryID)]) {
                if place.isNull(2) && place.double(1) <= limit {
                    try db.run("UPDATE waiting SET withdrawn = ? WHERE seq = ?", [.text(reason), .integer(place.int(0))])
                    outcome.withdrawn = true
                }
            } else if outcome.assignment == nil {
                return nil
            }
            return outcome
        }
    }

    public func assignment(deliveryID: String) async throws -> DroneSchedulerV1.Assignment? {
        try await database.read { db in try Self.assignment(deliveryID, activeOnly: false, db) }
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

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteDroneStore = SQLDroneStore
