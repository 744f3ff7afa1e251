// dronescheduler-service: drones, assignments, utilization (DroneSchedulerService) and the fleet's
// reported positions (TelemetryService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 2 (ServicePorts).
// Follows Delivery's events to free drones whose deliveries ended.
//   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS (default DIR/broker.sqlite)
import DroneDeliveryAPI
import DroneScheduler
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"] + Configuration.storeFlags + Configuration.brokerFlags)
    let host = ServiceHost(name: "dronescheduler", port: try configuration.int("port", default: DefaultPort.droneScheduler), listenHost: configuration.listenHost)
    let storeChoice = try serviceStore(configuration, service: "dronescheduler", file: "dronescheduler.sqlite")
    let store = try SQLDroneStore(storeChoice.location)
    host.metrics.addCollector {
        MetricsEndpoint.Sample.perValue(DroneSchedulerV1.DroneStatus.self, name: "fabrikam_drones", label: "status",
                                        counts: (try? await store.countsByStatus()) ?? [:], help: "Drones in each status.")
    }
    let logic = DroneSchedulerServiceLogic(store: store)
    let (broker, brokerProbes) = try await openBroker(configuration)
    let events = try await broker.subscribe(to: "delivery-events", group: "dronescheduler")
    var router = Router()
    logic.register(in: &router)
    TelemetryServiceLogic(store: store).register(in: &router)
    try await host.serve(router, background: [{
        await MessageConsumer(queue: broker, queueName: events, consumerName: "dronescheduler").run(logic.handleDeliveryEvent)
    }], stores: [storeChoice.probe] + brokerProbes)
}
