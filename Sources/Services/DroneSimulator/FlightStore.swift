import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// A simulated drone: where it is and how it flies.
public struct SimulatedDrone: Sendable, Hashable {
    public var id: String
    public var position: CommonV1.Location
    public var home: CommonV1.Location
    public var speed: Double
    public var capacityKg: Double
    public var maxPackageSize: CommonV1.PackageSize

    public init(id: String, position: CommonV1.Location, home: CommonV1.Location, speed: Double, capacityKg: Double, maxPackageSize: CommonV1.PackageSize) {
        self.id = id
        self.position = position
        self.home = home
        self.speed = speed
        self.capacityKg = capacityKg
        self.maxPackageSize = maxPackageSize
    }
}

/// A flight in progress.
public struct Flight: Sendable, Hashable {
    public var plan: TelemetryV1.FlightPlan
    public var phase: TelemetryV1.FlightPhase
    public var sequence: Int64 = 0

    public init(plan: TelemetryV1.FlightPlan, phase: TelemetryV1.FlightPhase, sequence: Int64 = 0) {
        self.plan = plan
        self.phase = phase
        self.sequence = sequence
    }
}

/// The simulator's own store: the fleet's positions and the flights in progress, so a restarted
/// simulator picks its drones up where they were.
public protocol FlightStore: Sendable {
    func drones() async throws -> [SimulatedDrone]
    /// One drone of the fleet; nil when it is not in it.
    func drone(id: String) async throws -> SimulatedDrone?
    func saveDrones(_ drones: [SimulatedDrone]) async throws
    func flights() async throws -> [Flight]
    func flight(deliveryID: String) async throws -> Flight?
    /// The flight `droneID` is flying, if any (a drone flies at most one).
    func flight(droneID: String) async throws -> Flight?
    /// Adds a flight for a delivery that has none; false (and nothing written) when it has one.
    func createFlight(_ flight: Flight) async throws -> Bool
    /// Replaces the delivery's flight `expected` by `flight`, only while `expected` is still on
    /// file as it was read (the same plan, phase and sequence): a tick that moved it on, or an
    /// abort, comes first, and the caller reads again. Returns whether it replaced it.
    func replaceFlight(_ expected: Flight, with flight: Flight) async throws -> Bool
    func removeFlight(deliveryID: String) async throws -> Bool
    /// Renews `holder`'s membership and its drones for `lease`, takes unowned or expired drones
    /// up to its fair share (the fleet divided by the live replicas), hands idle drones back when it
    /// holds more than one over its share (a replica came back), and returns the drones it owns
    /// now. Times are the database's clock, so replicas on several hosts agree on them.
    func claimDrones(holder: String, lease: Duration) async throws -> Set<String>
    /// Saves a tick's outcome in one transaction, fenced by ownership: a drone's new position and
    /// its flight are written only while `holder` still owns the drone, and a flight only while it
    /// is still on file as the tick read it: the same plan, and the sequence before this tick's
    /// (each flight's `sequence` minus one). An abort during the tick wins, and so does a flight
    /// aborted and planned again with the same plan. Returns the delivery ids of the flights
    /// saved: only those may be reported.
    func saveTick(drones: [SimulatedDrone], flights: [Flight], holder: String) async throws -> Set<String>
    /// Ends flights that reached their drop-off and were reported, while `holder` owns their
    /// drones and each is still on file as the tick saved it (the same plan and sequence: a
    /// flight aborted and planned again since is a new one, and keeps flying).
    func finishFlights(_ flights: [Flight], holder: String) async throws
}

/// The simulator's fleet and flights in a SQL database (SQLite file or a PostgreSQL schema).
public final class SQLFlightStore: FlightStore {
    let database: any SQLDatabase

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE drones (drone_id TEXT PRIMARY KEY, latitude REAL NOT NULL, longitude REAL NOT NULL, altitude REAL NOT NULL,
                             home_latitude REAL NOT NULL, home_longitude REAL NOT NULL, speed REAL NOT NULL,
                             capacity_kg REAL NOT NULL, max_size INTEGER NOT NULL);
        CREATE TABLE flights (delivery_id TEXT PRIMARY KEY, drone_id TEXT NOT NULL, phase INTEGER NOT NULL,
                              sequence INTEGER NOT NULL, plan BLOB NOT NULL);
        """,
        // One flight per drone (AssignFlight refuses a second; a file from before keeps its first).
        """
        DELETE FROM flights WHERE rowid NOT IN (SELECT MIN(rowid) FROM flights GROUP BY drone_id);
        CREATE UNIQUE INDEX one_flight_per_drone ON flights (drone_id);
        """,
        // Replicas and the drones each owns, until a time on the database's clock (claimDrones).
        """
        CREATE TABLE simulator_members (holder TEXT PRIMARY KEY, until REAL NOT NULL);
        CREATE TABLE drone_owners (drone_id TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL);
        """,
    ], postgres: [
        """
        CREATE TABLE drones (drone_id TEXT PRIMARY KEY, latitude DOUBLE PRECISION NOT NULL, longitude DOUBLE PRECISION NOT NULL,
                             altitude DOUBLE PRECISION NOT NULL, home_latitude DOUBLE PRECISION NOT NULL,
                             home_longitude DOUBLE PRECISION NOT NULL, speed DOUBLE PRECISION NOT NULL,
                             capacity_kg DOUBLE PRECISION NOT NULL, max_size BIGINT NOT NULL);
        CREATE TABLE flights (delivery_id TEXT PRIMARY KEY, drone_id TEXT NOT NULL, phase BIGINT NOT NULL,
                              sequence BIGINT NOT NULL, plan BYTEA NOT NULL);
        CREATE UNIQUE INDEX one_flight_per_drone ON flights (drone_id);
        """,
        """
        CREATE TABLE simulator_members (holder TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL);
        CREATE TABLE drone_owners (drone_id TEXT PRIMARY KEY, holder TEXT NOT NULL, until DOUBLE PRECISION NOT NULL);
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

    static let selectDrones = "SELECT drone_id, latitude, longitude, altitude, home_latitude, home_longitude, speed, capacity_kg, max_size FROM drones"

    static func loadDrone(_ row: Row) -> SimulatedDrone {
        SimulatedDrone(id: row.string(0), position: CommonV1.Location(latitude: row.double(1), longitude: row.double(2), altitude: row.double(3)),
                       home: CommonV1.Location(latitude: row.double(4), longitude: row.double(5)), speed: row.double(6),
                       capacityKg: row.double(7), maxPackageSize: CommonV1.PackageSize(rawValue: Int32(row.int(8))))
    }

    public func drones() async throws -> [SimulatedDrone] {
        try await database.read { db in try db.query(Self.selectDrones + " ORDER BY drone_id").map(Self.loadDrone) }
    }

    public func drone(id: String) async throws -> SimulatedDrone? {
        try await database.read { db in try db.queryFirst(Self.selectDrones + " WHERE drone_id = ?", [.text(id)]).map(Self.loadDrone) }
    }

    static func write(_ drone: SimulatedDrone, _ db: any SQLTransaction) throws {
        try db.run("""
            INSERT INTO drones (drone_id, latitude, longitude, altitude, home_latitude, home_longitude, speed, capacity_kg, max_size)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (drone_id) DO UPDATE SET latitude = excluded.latitude, longitude = excluded.longitude, altitude = excluded.altitude,
                home_latitude = excluded.home_latitude, home_longitude = excluded.home_longitude, speed = excluded.speed,
                capacity_kg = excluded.capacity_kg, max_size = excluded.max_size
            """,
                   [.text(drone.id), .real(drone.position.latitude), .real(drone.position.longitude), .real(drone.position.altitude),
                    .real(drone.home.latitude), .real(drone.home.longitude), .real(drone.speed), .real(drone.capacityKg),
                    .integer(Int64(drone.maxPackageSize.rawValue))])
    }

    static func load(_ row: Row) throws -> Flight {
        Flight(plan: try TelemetryV1.FlightPlan(storedBytes: row.bytes(0), what: "flight plan"),
               phase: TelemetryV1.FlightPhase(rawValue: Int32(row.int(1))), sequence: row.int(2))
    }

    public func saveDrones(_ drones: [SimulatedDrone]) async throws {
        try await database.write { db in for drone in drones { try Self.write(drone, db) } }
    }

    public func flights() async throws -> [Flight] {
        try await database.read { db in try db.query("SELECT plan, phase, sequence FROM flights ORDER BY delivery_id").map(Self.load) }
    }

    public func flight(deliveryID: String) async throws -> Flight? {
        try await database.read { db in try db.queryFirst("SELECT plan, phase, sequence FROM flights WHERE delivery_id = ?", [.text(deliveryID)]).map(Self.load) }
    }

    public func flight(droneID: String) async throws -> Flight? {
        try await database.read { db in try db.queryFirst("SELECT plan, phase, sequence FROM flights WHERE drone_id = ?", [.text(droneID)]).map(Self.load) }
    }

    public func createFlight(_ flight: Flight) async throws -> Bool {
        try await database.write { db in
            try db.run("INSERT INTO flights (delivery_id, drone_id, phase, sequence, plan) VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO NOTHING",
                       [.text(flight.plan.deliveryId), .text(flight.plan.droneId), .integer(Int64(flight.phase.rawValue)), .integer(flight.sequence),
                        .blob(flight.plan.serializedBytes())]) == 1
        }
    }

    public func replaceFlight(_ expected: Flight, with flight: Flight) async throws -> Bool {
        try await database.write { db in
            try db.run("""
                UPDATE flights SET drone_id = ?, phase = ?, sequence = ?, plan = ? WHERE delivery_id = ? AND plan = ? AND phase = ? AND sequence = ?
                """, [.text(flight.plan.droneId), .integer(Int64(flight.phase.rawValue)), .integer(flight.sequence), .blob(flight.plan.serializedBytes()),
                      .text(expected.plan.deliveryId), .blob(expected.plan.serializedBytes()), .integer(Int64(expected.phase.rawValue)),
                      .integer(expected.sequence)]) == 1
        }
    }

    public func removeFlight(deliveryID: String) async throws -> Bool {
        try await database.write { db in try db.run("DELETE FROM flights WHERE delivery_id = ?", [.text(deliveryID)]) == 1 }
    }

    // MARK: Ownership among replicas

    /// Seconds since 1970 on the database's clock.
    static func databaseNow(_ db: any SQLTransaction) throws -> Double {
        try db.queryFirst("SELECT \(db.dialect.epochNow)")?.double(0) ?? 0
    }

    /// A drone `holder` owns until after `now`, as SQL: the fence of every write a tick makes.
    static let ownedByHolder = "EXISTS (SELECT 1 FROM drone_owners o WHERE o.drone_id = ? AND o.holder = ? AND o.until > ?)"

    public func claimDrones(holder: String, lease: Duration) async throws -> Set<String> {
        let seconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        // One claim at a time across replicas (PostgreSQL: an advisory lock; SQLite: its writer),
        // so the count of live replicas and the shares it gives are consistent.
        return try await database.write(locking: ["simulator:ownership"]) { db in
            let now = try Self.databaseNow(db)
            let until = now + seconds
            try db.run("INSERT INTO simulator_members (holder, until) VALUES (?, ?) ON CONFLICT (holder) DO UPDATE SET until = excluded.until",
                       [.text(holder), .real(until)])
            let members = max(1, Int(try db.queryFirst("SELECT COUNT(*) FROM simulator_members WHERE until > ?", [.real(now)])?.int(0) ?? 1))
            let fleet = Int(try db.queryFirst("SELECT COUNT(*) FROM drones")?.int(0) ?? 0)
            let share = (fleet + members - 1) / members
            // Renew only what is still ours: a drone another replica took after our lease ran out stays its.
            try db.run("UPDATE drone_owners SET until = ? WHERE holder = ?", [.real(until), .text(holder)])
            var held = Int(try db.queryFirst("SELECT COUNT(*) FROM drone_owners WHERE holder = ?", [.text(holder)])?.int(0) ?? 0)
            if held < share {
                // Drones with a flight first: they are the ones whose positions are overdue.
                let candidates = try db.query("""
                    SELECT d.drone_id FROM drones d LEFT JOIN drone_owners o ON o.drone_id = d.drone_id
                     WHERE o.drone_id IS NULL OR o.until <= ?
                     ORDER BY CASE WHEN EXISTS (SELECT 1 FROM flights f WHERE f.drone_id = d.drone_id) THEN 0 ELSE 1 END, d.drone_id
                     LIMIT ?
                    """, [.real(now), .integer(Int64(share - held))]).map { $0.string(0) }
                for drone in candidates {
                    held += try db.run("""
                        INSERT INTO drone_owners (drone_id, holder, until) VALUES (?, ?, ?)
                        ON CONFLICT (drone_id) DO UPDATE SET holder = excluded.holder, until = excluded.until WHERE drone_owners.until <= ?
                        """, [.text(drone), .text(holder), .real(until), .real(now)])
                }
            } else if held > share + 1 {
                // A replica joined or came back: hand idle drones back (never one in flight).
                let idle = try db.query("""
                    SELECT drone_id FROM drone_owners WHERE holder = ? AND drone_id NOT IN (SELECT drone_id FROM flights) ORDER BY drone_id DESC LIMIT ?
                    """, [.text(holder), .integer(Int64(held - share))]).map { $0.string(0) }
                for drone in idle { try db.run("DELETE FROM drone_owners WHERE drone_id = ? AND holder = ?", [.text(drone), .text(holder)]) }
            }
            try db.run("DELETE FROM simulator_members WHERE until < ?", [.real(now - 3600)])
            return Set(try db.query("SELECT drone_id FROM drone_owners WHERE holder = ? AND until > ?", [.text(holder), .real(now)]).map { $0.string(0) })
        }
    }

    public func saveTick(drones: [SimulatedDrone], flights: [Flight], holder: String) async throws -> Set<String> {
        try await database.write { db in
            let now = try Self.databaseNow(db)
            for drone in drones {
                try db.run("UPDATE drones SET latitude = ?, longitude = ?, altitude = ? WHERE drone_id = ? AND \(Self.ownedByHolder)",
                           [.real(drone.position.latitude), .real(drone.position.longitude), .real(drone.position.altitude), .text(drone.id),
                            .text(drone.id), .text(holder), .real(now)])
            }
            var saved: Set<String> = []
            for flight in flights {
                let changed = try db.run("""
                    UPDATE flights SET phase = ?, sequence = ? WHERE delivery_id = ? AND plan = ? AND sequence = ? AND \(Self.ownedByHolder)
                    """, [.integer(Int64(flight.phase.rawValue)), .integer(flight.sequence), .text(flight.plan.deliveryId),
                          .blob(flight.plan.serializedBytes()), .integer(flight.sequence - 1), .text(flight.plan.droneId), .text(holder), .real(now)])
                if changed == 1 { saved.insert(flight.plan.deliveryId) }
            }
            return saved
        }
    }

    public func finishFlights(_ flights: [Flight], holder: String) async throws {
        guard !flights.isEmpty else { return }
        try await database.write { db in
            let now = try Self.databaseNow(db)
            for flight in flights {
                try db.run("DELETE FROM flights WHERE delivery_id = ? AND plan = ? AND sequence = ? AND \(Self.ownedByHolder)",
                           [.text(flight.plan.deliveryId), .blob(flight.plan.serializedBytes()), .integer(flight.sequence), .text(flight.plan.droneId),
                            .text(holder), .real(now)])
            }
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteFlightStore = SQLFlightStore
