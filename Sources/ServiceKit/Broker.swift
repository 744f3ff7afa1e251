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
