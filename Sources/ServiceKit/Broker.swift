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
/// Returns the broker and the store probes for the service's health (the SQLite file; none for
/// JetStream, whose connection reconnects on its own and whose calls fail while it is away).
public func openBroker(_ configuration: Configuration, logger: Logger = Logger(label: "fabrikam.broker")) async throws
    -> (broker: any MessageQueue & EventStream, probes: [StoreProbe]) {
    let spec = configuration.string("broker", default: try databasePath(configuration, file: "broker.sqlite"))
    if spec.hasPrefix("nats://") || spec.hasPrefix("tls://") {
        var settings = JetStreamBroker.Configuration(url: spec)
        settings.namespace = configuration.string("broker-namespace", default: "fabrikam")
        logger.info("messaging on NATS JetStream", metadata: ["url": "\(spec)", "namespace": "\(settings.namespace)"])
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
    logger.info("live feed on NATS", metadata: ["url": "\(spec)", "namespace": "\(settings.namespace)"])
    let chosen = settings
    return try await EngineWait(configuration).retrying("NATS", logger: logger) {
        try await NATSLiveFeed(chosen, logger: logger)
    }
}
