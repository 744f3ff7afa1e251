// delivery-service: deliveries in flight, tracking, confirmations (DeliveryService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 3 (ServicePorts).
// Publishes domain events to the broker's "delivery-events" topic; dispatches flights to the simulator;
// announces tracking events on the live feed of the broker's engine (NATS: any replica serves any stream).
//   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS  --simulator HOST:PORT
//   --flight-silence-seconds S (a flight that reports nothing for this long is lost: FAILED)
//   --store sqlite|postgresql://…  --replica-id NAME (the holder of the leases of the loops one replica runs: outbox relay, flight aborts, flight watch)
import Delivery
import DroneDeliveryAPI
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "simulator", "flight-silence-seconds"] + Configuration.storeFlags + Configuration.brokerFlags)
    let host = ServiceHost(name: "delivery", port: try configuration.int("port", default: DefaultPort.delivery), listenHost: configuration.listenHost)
    let simulator = try configuration.address("simulator", defaultPort: DefaultPort.simulator)
    let flightControl = Downstream(name: "flight-control", host: simulator.host, port: simulator.port)
    let storeChoice = try serviceStore(configuration, service: "delivery", file: "delivery.sqlite")
    let store = try SQLDeliveryStore(storeChoice.location)
    host.metrics.addCollector {
        MetricsEndpoint.Sample.perValue(CommonV1.DeliveryStage.self, name: "fabrikam_deliveries", label: "stage",
                                        counts: (try? await store.countsByStage()) ?? [:], help: "Deliveries at each stage.")
    }
    let (broker, brokerProbes) = try await openBroker(configuration)
    // Tracking streams hear of new events through the broker's engine: NATS reaches every replica.
    let liveFeed = try await openLiveFeed(configuration, logger: host.logger)
    let logic = DeliveryServiceLogic(store: store, flightControl: flightControl.client, liveFeed: liveFeed, logger: host.logger)
    host.metrics.addCollector {
        [MetricsEndpoint.Sample("fabrikam_tracking_follows", value: Double(liveFeed.followerCount()),
                                help: "Live-feed follows open in this process: one per open TrackDelivery stream.")]
    }
    var router = Router()
    logic.register(in: &router)
    let silence = Duration.seconds(try configuration.int("flight-silence-seconds", default: 30))
    // These loops run once per deployment: each only on the replica that holds its lease (two
    // relays could publish one delivery's events out of order).
    let (relay, aborts, watch) = (LeaderLoop(name: "delivery.outbox-relay", holder: configuration.replicaID, leases: store.leases, logger: host.logger),
                                  LeaderLoop(name: "delivery.flight-aborts", holder: configuration.replicaID, leases: store.leases, logger: host.logger),
                                  LeaderLoop(name: "delivery.flight-watch", holder: configuration.replicaID, leases: store.leases, logger: host.logger))
    try await host.serve(router, background: [
        { await relay.run { await logic.relayEvents(to: broker) } },
        { await aborts.run { await logic.abortFlights() } },
        { await watch.run { await logic.watchFlights(silence: silence, every: .seconds(1)) } },
    ], stores: [storeChoice.probe] + brokerProbes)
}
