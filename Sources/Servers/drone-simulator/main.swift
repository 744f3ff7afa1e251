// drone-simulator: the simulated fleet; FlightControlService on 127.0.0.1, port FABRIKAM_PORT_BASE + 8 (ServicePorts).
//   --port N  --data-dir DIR  --delivery/--dronescheduler HOST:PORT  --drones N  --tick-ms MS
//   --time-scale X (simulated seconds per second)  --base LAT,LON (where the fleet lives)
//   --store sqlite|postgresql://…  --replica-id NAME (the holder of this replica's drone leases)
import DroneDeliveryAPI
import DroneSimulator
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "delivery", "dronescheduler", "drones", "tick-ms", "time-scale", "base"] + Configuration.storeFlags)
    let host = ServiceHost(name: "simulator", port: try configuration.int("port", default: DefaultPort.simulator), listenHost: configuration.listenHost)
    let deliveryAddress = try configuration.address("delivery", defaultPort: DefaultPort.delivery)
    let schedulerAddress = try configuration.address("dronescheduler", defaultPort: DefaultPort.droneScheduler)
    var settings = DroneSimulator.Settings()
    settings.tick = .milliseconds(try configuration.int("tick-ms", default: 1000))
    settings.timeScale = try configuration.double("time-scale", default: 10)
    let baseText = configuration.string("base", default: "47.6062,-122.3321")
    let coordinates = baseText.split(separator: ",").compactMap { Double($0) }
    guard coordinates.count == 2 else { throw ConfigurationError("--base must be LAT,LON, got \"\(baseText)\"") }
    let delivery = Downstream(name: "delivery", host: deliveryAddress.host, port: deliveryAddress.port)
    let scheduler = Downstream(name: "dronescheduler", host: schedulerAddress.host, port: schedulerAddress.port)
    let storeChoice = try serviceStore(configuration, service: "simulator", file: "simulator.sqlite")
    let simulator = DroneSimulator(store: try SQLFlightStore(storeChoice.location),
                                   delivery: delivery.client, settings: settings, replicaID: configuration.replicaID, logger: host.logger)
    _ = try await simulator.createFleet(count: try configuration.int("drones", default: 12), base: CommonV1.Location(latitude: coordinates[0], longitude: coordinates[1]))
    var router = Router()
    simulator.register(in: &router)
    try await host.serve(router, background: [
        { await simulator.registerFleet(with: DroneSchedulerV1.DroneSchedulerService.Client(scheduler.client)) },
        { await simulator.fly() },
    ], stores: [storeChoice.probe])
}
