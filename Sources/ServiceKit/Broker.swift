import Foundation
import Logging
import Messaging
import MessagingNATS

/// The messaging engine a service uses, chosen by configuration (`--broker`, `FABRIKAM_BROKER`):
/// - a file path (the default: `broker.sqlite` in the data directory): the embedded SQLite broker,
///   shared by every process on this host;
/// - `nats://host:port` (several separated by commas): NATS JetStream (`JetStreamBroker`), whose
///   streams are named after `--broker-namespace` / `FABRIKAM_BROKER_NAMESPACE` (default
///   `fabrikam`). Every process of one system must name the same server and namespace.
///
/// A NATS server that requires credentials gets them from `--broker-user` with the secret
/// `broker-password` (`FABRIKAM_BROKER_PASSWORD_FILE`, a mounted Secret, or
/// `FABRIKAM_BROKER_PASSWORD`; `Configuration.secret`).
///
/// Returns the broker and the store probes for the service's health (the SQLite file; none for
/// JetStream, whose connection reconnects on its own and whose calls fail while it is away).
public func openBroker(_ configuration: Configuration, logger: Logger = Logger(label: "fabrikam.broker")) async throws
    -> (broker: any MessageQueue & EventStream, probes: [StoreProbe]) {
    let spec = configuration.string("broker", default: try databasePath(configuration, file: "broker.sqlite"))
    if spec.hasPrefix("nats://") || spec.hasPrefix("tls://") {
        var settings = JetStreamBroker.Configuration(url: spec)
        settings.namespace = configuration.string("broker-namespace", default: "fabrikam")
        settings.credentials = try natsCredentials(configuration)
        logger.info("messaging on NATS JetStream", metadata: ["url": "\(NATSConnection.redacted(spec))", "namespace": "\(settings.namespace)"])
        // A server still starting (containers started together) is waited for, when configured.
        let chosen = settings
        let broker = try await EngineWait(configuration).retrying("NATS", logger: logger) {
            try await JetStreamBroker(chosen, logger: logger)
        }
        return (broker, [])
    }
    return (try SQLiteBroker(path: spec), [StoreProbe(name: "broker", path: spec)])
}

/// The live feed that goes with the configured broker (`--broker`, `--broker-namespace`): with
/// NATS, core NATS subjects on the same server and namespace (`NATSLiveFeed`), so a follower on
/// any replica hears what any replica announces; otherwise in-process (`InProcessLiveFeed`):
/// the SQLite broker serves one host, and a follower in another process of that host only sees
/// what its own process announces (Delivery's tracking streams then rely on their store re-reads).
public func openLiveFeed(_ configuration: Configuration, logger: Logger = Logger(label: "fabrikam.live")) async throws -> any LiveFeed {
    let spec = configuration.string("broker", default: "")
    guard spec.hasPrefix("nats://") || spec.hasPrefix("tls://") else { return InProcessLiveFeed() }
    var settings = NATSLiveFeed.Configuration(url: spec)
    settings.namespace = configuration.string("broker-namespace", default: "fabrikam")
    settings.credentials = try natsCredentials(configuration)
    logger.info("live feed on NATS", metadata: ["url": "\(NATSConnection.redacted(spec))", "namespace": "\(settings.namespace)"])
    let chosen = settings
    return try await EngineWait(configuration).retrying("NATS", logger: logger) {
        try await NATSLiveFeed(chosen, logger: logger)
    }
}

extension Configuration {
    /// The flags of a service that uses the broker (`openBroker`, `openLiveFeed`): `broker`,
    /// `broker-namespace`, and NATS's credentials (`broker-user`, and the secret `broker-password`
    /// as a file: `--broker-password-file`).
    public static let brokerFlags = ["broker", "broker-namespace", "broker-user", "broker-password-file"]
}

/// NATS credentials as configured: a user with a password, or none. A user without a password or
/// a password without a user is an error naming the settings.
public func natsCredentials(_ configuration: Configuration) throws -> NATSCredentials {
    let user = configuration.string("broker-user", default: "")
    let password = try configuration.secret("broker-password")
    switch (user.isEmpty ? nil : user, password) {
    case (nil, nil): return .none
    case (let user?, let password?): return .userPassword(user: user, password: password)
    case (_?, nil):
        throw ConfigurationError("--broker-user (FABRIKAM_BROKER_USER) needs its password: FABRIKAM_BROKER_PASSWORD_FILE, --broker-password-file or FABRIKAM_BROKER_PASSWORD")
    case (nil, _?):
        throw ConfigurationError("a NATS password is set (broker-password) without --broker-user (FABRIKAM_BROKER_USER)")
    }
}
