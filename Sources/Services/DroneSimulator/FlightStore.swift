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
    func saveDrones(_ drones: [SimulatedDrone]) async throws
    func flights() async throws -> [Flight]
    func flight(deliveryID: String) async throws -> Flight?
    func saveFlight(_ flight: Flight) async throws
    func removeFlight(deliveryID: String) async throws -> Bool
    /// Saves a tick's outcome in one transaction: new positions, updated and finished flights.
    func saveTick(drones: [SimulatedDrone], flights: [Flight], finished: [Flight]) async throws
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
    ])

    /// Opens the store where `location` says (blocking: call at start or off the cooperative pool).
    public init(_ location: any DatabaseLocation) throws {
        database = try location.open(Self.schema)
    }

    /// The embedded default: a SQLite file.
    public convenience init(path: String) throws {
        try self.init(SQLiteLocation(path: path))
    }

    public func drones() async throws -> [SimulatedDrone] {
        try await database.read { db in
            try db.query("SELECT drone_id, latitude, longitude, altitude, home_latitude, home_longitude, speed, capacity_kg, max_size FROM drones ORDER BY drone_id").map {
                SimulatedDrone(id: $0.string(0), position: CommonV1.Location(latitude: $0.double(1), longitude: $0.double(2), altitude: $0.double(3)),
                               home: CommonV1.Location(latitude: $0.double(4), longitude: $0.double(5)), speed: $0.double(6),
                               capacityKg: $0.double(7), maxPackageSize: CommonV1.PackageSize(rawValue: Int32($0.int(8))))
            }
        }
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

    static func write(_ flight: Flight, _ db: any SQLTransaction) throws {
        try db.run("""
            INSERT INTO flights (delivery_id, drone_id, phase, sequence, plan) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (delivery_id) DO UPDATE SET drone_id = excluded.drone_id, phase = excluded.phase, sequence = excluded.sequence,
                plan = excluded.plan
            """,
                   [.text(flight.plan.deliveryId), .text(flight.plan.droneId), .integer(Int64(flight.phase.rawValue)), .integer(flight.sequence),
                    .blob(flight.plan.serializedBytes())])
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

    public func saveFlight(_ flight: Flight) async throws {
        try await database.write { db in try Self.write(flight, db) }
    }

    public func removeFlight(deliveryID: String) async throws -> Bool {
        try await database.write { db in try db.run("DELETE FROM flights WHERE delivery_id = ?", [.text(deliveryID)]) == 1 }
    }

    public func saveTick(drones: [SimulatedDrone], flights: [Flight], finished: [Flight]) async throws {
        try await database.write { db in
            for drone in drones { try Self.write(drone, db) }
            for flight in flights where !finished.contains(where: { $0.plan.deliveryId == flight.plan.deliveryId }) {
                // Only flights still on file: an abort during the tick wins.
                if try db.queryFirst("SELECT 1 FROM flights WHERE delivery_id = ? AND plan = ?", [.text(flight.plan.deliveryId), .blob(flight.plan.serializedBytes())]) != nil {
                    try Self.write(flight, db)
                }
            }
            for flight in finished {
                try db.run("DELETE FROM flights WHERE delivery_id = ? AND plan = ?", [.text(flight.plan.deliveryId), .blob(flight.plan.serializedBytes())])
            }
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLiteFlightStore = SQLFlightStore
