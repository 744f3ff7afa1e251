import DroneDeliveryAPI
import ProtobufKit
import ServiceKit
import Storage

/// What `PackageStore.put` did.
public enum PackagePutOutcome: Sendable {
    /// Stored (created, or replaced the same owner's package).
    case stored(PackageV1.Package, created: Bool)
    /// Nothing written: the id is another owner's package.
    case ownedByAnother
}

/// Where the Package service keeps packages (protocol: the business logic sees nothing else).
public protocol PackageStore: Sendable {
    /// Creates or replaces by id, keeping the original create time, in one transaction; a
    /// package of another owner (a stored non-empty owner different from the new one) is left
    /// as it is.
    func put(_ package: PackageV1.Package) async throws -> PackagePutOutcome
    func package(id: String) async throws -> PackageV1.Package?
    /// Applies `change` to the stored package atomically; nil if there is none.
    func update(id: String, _ change: @escaping @Sendable (inout PackageV1.Package) throws -> Void) async throws -> PackageV1.Package?
    func delete(id: String) async throws -> Bool
    func summary(ownerID: String) async throws -> PackageV1.PackageSummary
}

/// Packages in a SQL database (SQLite file or a PostgreSQL schema): one row per package, its
/// protobuf encoding plus the columns queries need.
public final class SQLPackageStore: PackageStore {
    let database: any SQLDatabase

    public static let schema = DatabaseSchema(sqlite: [
        """
        CREATE TABLE packages (package_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, size INTEGER NOT NULL,
                               weight REAL NOT NULL, data BLOB NOT NULL);
        CREATE INDEX packages_owner ON packages (owner_id);
        """,
    ], postgres: [
        """
        CREATE TABLE packages (package_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, size BIGINT NOT NULL,
                               weight DOUBLE PRECISION NOT NULL, data BYTEA NOT NULL);
        CREATE INDEX packages_owner ON packages (owner_id);
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

    /// Read-modify-write of one package holds this key (PostgreSQL: an advisory lock; the package
    /// may not exist yet, so a row lock would not do).
    static func key(_ id: String) -> String { "package:" + id }

    public func put(_ package: PackageV1.Package) async throws -> PackagePutOutcome {
        try await database.write(locking: [Self.key(package.packageId)]) { db in
            var package = package
            var created = true
            if let row = try db.queryFirst("SELECT data FROM packages WHERE package_id = ?", [.text(package.packageId)]) {
                let existing = try PackageV1.Package(storedBytes: row.bytes(0), what: "package")
                if !existing.ownerId.isEmpty, existing.ownerId != package.ownerId { return .ownedByAnother }
                package.createTime = existing.createTime
                created = false
                if Self.sameContent(existing, package) { return .stored(existing, created: false) }
            }
            try Self.save(package, db)
            return .stored(package, created: created)
        }
    }

    static func sameContent(_ a: PackageV1.Package, _ b: PackageV1.Package) -> Bool {
        var a = a, b = b
        a.updateTime = nil; b.updateTime = nil
        return a == b
    }

    static func save(_ package: PackageV1.Package, _ db: any SQLTransaction) throws {
        try db.run("""
            INSERT INTO packages (package_id, owner_id, size, weight, data) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (package_id) DO UPDATE SET owner_id = excluded.owner_id, size = excluded.size, weight = excluded.weight, data = excluded.data
            """,
                   [.text(package.packageId), .text(package.ownerId), .integer(Int64(package.size.rawValue)), .real(package.weight), .blob(package.serializedBytes())])
    }

    public func package(id: String) async throws -> PackageV1.Package? {
        try await database.read { db in
            try db.queryFirst("SELECT data FROM packages WHERE package_id = ?", [.text(id)]).map { try PackageV1.Package(storedBytes: $0.bytes(0), what: "package") }
        }
    }

    public func update(id: String, _ change: @escaping @Sendable (inout PackageV1.Package) throws -> Void) async throws -> PackageV1.Package? {
        try await database.write(locking: [Self.key(id)]) { db in
            guard let row = try db.queryFirst("SELECT data FROM packages WHERE package_id = ?", [.text(id)]) else { return nil }
            var package = try PackageV1.Package(storedBytes: row.bytes(0), what: "package")
            try change(&package)
            try Self.save(package, db)
            return package
        }
    }

    public func delete(id: String) async throws -> Bool {
        try await database.write { db in try db.run("DELETE FROM packages WHERE package_id = ?", [.text(id)]) == 1 }
    }

    public func summary(ownerID: String) async throws -> PackageV1.PackageSummary {
        try await database.read { db in
            var summary = PackageV1.PackageSummary()
            summary.ownerId = ownerID
            for row in try db.query("SELECT size, COUNT(*), SUM(weight) FROM packages WHERE owner_id = ? GROUP BY size ORDER BY size", [.text(ownerID)]) {
                var count = PackageV1.PackageSummary.SizeCount()
                count.size = CommonV1.PackageSize(rawValue: Int32(row.int(0)))
                count.count = row.int(1)
                summary.sizeCounts.append(count)
                summary.packageCount += row.int(1)
                summary.totalWeight += row.double(2)
            }
            summary.averageWeight = summary.packageCount == 0 ? 0 : summary.totalWeight / Double(summary.packageCount)
            return summary
        }
    }
}

/// The embedded default's name, kept for callers that open a file.
public typealias SQLitePackageStore = SQLPackageStore
