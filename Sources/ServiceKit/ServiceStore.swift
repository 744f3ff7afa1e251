import Foundation
import Logging
import Storage
import StoragePostgres

extension Configuration {
    /// The flags of a service that keeps a store:
    /// - `store` (`FABRIKAM_STORE`): `sqlite` (the default: a file in `--data-dir`, as always) or a
    ///   PostgreSQL URL, `postgresql://user@host:port/database` (libpq's URI; `?sslmode=…` and
    ///   the rest of libpq's parameters allowed);
    /// - `store-schema`: the PostgreSQL schema the service keeps its tables in (default: the
    ///   service's name), created and migrated at start;
    /// - `store-pool-size`: PostgreSQL connections this process keeps (default 4);
    /// - the PostgreSQL password, a secret (`Configuration.secret`): `FABRIKAM_STORE_PASSWORD_FILE`
    ///   or `--store-password-file` (a mounted Secret), or `FABRIKAM_STORE_PASSWORD`; without
    ///   one, libpq's own PGPASSWORD and PGPASSFILE still apply. Never put it in the URL: the URL
    ///   is logged (redacted, but still);
    /// - `replica-id`: the name this replica holds claims and leases in the store under
    ///   (`Configuration.replicaID`).
    public static let storeFlags = ["store", "store-schema", "store-pool-size", "store-password-file", "replica-id"]
}

/// Where a service keeps its data, as configured, and how its health checks it.
public struct ServiceStore: Sendable {
    public let location: any DatabaseLocation
    public let probe: StoreProbe
    /// "sqlite" or "postgresql", for the start-up log.
    public let engine: String
}

/// The store `configuration` chooses for `service` (see `Configuration.storeFlags`); `file` is the
/// SQLite file's name in the data folder.
public func serviceStore(_ configuration: Configuration, service: String, file: String) throws -> ServiceStore {
    let choice = configuration.string("store", default: "sqlite")
    let name = "\(service) store"
    if choice == "sqlite" || choice.isEmpty {
        let path = try databasePath(configuration, file: file)
        return ServiceStore(location: SQLiteLocation(path: path), probe: StoreProbe(name: name, path: path), engine: "sqlite")
    }
    guard choice.hasPrefix("postgresql://") || choice.hasPrefix("postgres://") else {
        throw ConfigurationError("--store must be sqlite or a postgresql:// URL, got \"\(choice)\"")
    }
    let pool = try configuration.int("store-pool-size", default: 4)
    guard pool >= 1 else { throw ConfigurationError("--store-pool-size must be at least 1, got \(pool)") }
    let schema = configuration.string("store-schema", default: service)
    let url = choice
    let password = try configuration.secret("store-password")
    // A server still starting (containers started together) is waited for, when configured.
    let wait = try EngineWait(configuration)
    if wait.seconds > 0 {
        try wait.blocking("PostgreSQL", logger: Logger(label: "fabrikam.store")) { PostgresDatabase.problem(url: url, password: password) }
    }
    let probe = PostgresProbe(url: url, password: password, name: name)
    return ServiceStore(location: PostgresLocation(url: url, schema: schema, poolSize: pool, password: password),
                        probe: StoreProbe(name: name, check: { probe.problem().map { "\(name) (PostgreSQL): \($0)" } }),
                        engine: "postgresql")
}
