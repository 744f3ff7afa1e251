/// Named leases: the right to do something alone (run a service's singleton loop), held by one
/// holder (a replica) until a time on the database's clock, and renewed by that holder before it
/// runs out. Whoever asks while the lease is free, expired, or already theirs gets it; everyone
/// else is refused. Replicas of one service share the service's database, so they share its leases.
public protocol LeaseStore: Sendable {
    /// Takes or renews the lease `name` for `holder`, for `ttl` from now (the database's clock).
    /// True when `holder` holds it now; false when another holder's lease is still running.
    func acquire(_ name: String, holder: String, for ttl: Duration) async throws -> Bool
    /// Gives the lease up, if `holder` still holds it, so another replica need not wait for it to expire.
    func release(_ name: String, holder: String) async throws
    /// Who holds `name` now; nil when nobody does (never taken, released, or expired).
    func holder(of name: String) async throws -> String?
}

/// Leases in a table of the service's own database. A store whose service has singleton loops
/// adds `sqliteTable`/`postgresTable` as a step of its `DatabaseSchema` and hands its database
/// to this store.
public final class SQLLeaseStore: LeaseStore {
    /// The `leases` table, as a SQLite schema step.
    public static let sqliteTable = "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, held_until REAL NOT NULL);"
    /// The `leases` table, as a PostgreSQL schema step.
    public static let postgresTable = "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, held_until DOUBLE PRECISION NOT NULL);"

    let database: any SQLDatabase

    /// Leases in `database`, which must have the `leases` table.
    public init(database: any SQLDatabase) {
        self.database = database
    }

    public func acquire(_ name: String, holder: String, for ttl: Duration) async throws -> Bool {
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        return try await database.write { db in
            // One statement decides between contenders: the insert, or the update of a lease that
            // expired or is the asker's own. Anything else leaves the row alone and returns nothing.
            let now = db.dialect.epochNow
            return try db.queryFirst("""
                INSERT INTO leases (name, holder, held_until) VALUES (?, ?, \(now) + ?)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, held_until = excluded.held_until
                 WHERE leases.held_until < \(now) OR leases.holder = excluded.holder
                RETURNING holder
                """, [.text(name), .text(holder), .real(seconds)]) != nil
        }
    }

    public func release(_ name: String, holder: String) async throws {
        try await database.write { db in
            try db.run("DELETE FROM leases WHERE name = ? AND holder = ?", [.text(name), .text(holder)])
        }
    }

    public func holder(of name: String) async throws -> String? {
        try await database.read { db in
            try db.queryFirst("SELECT holder FROM leases WHERE name = ? AND held_until >= \(db.dialect.epochNow)", [.text(name)])?.string(0)
        }
    }
}
