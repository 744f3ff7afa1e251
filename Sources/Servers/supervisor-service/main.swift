// supervisor-service: failed sagas and their compensation (SupervisorService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 7 (ServicePorts).
//   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS  --dronescheduler/--package/--delivery/--simulator HOST:PORT
//   --store sqlite|postgresql://…  --replica-id NAME (the holder of this replica's claims on failed sagas)
import Messaging
import RPC
import ServiceKit
import Supervisor

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "package", "dronescheduler", "delivery", "simulator"] + Configuration.storeFlags + Configuration.brokerFlags)
    let host = ServiceHost(name: "supervisor", port: try configuration.int("port", default: DefaultPort.supervisor), listenHost: configuration.listenHost)
    func downstream(_ name: String, _ port: Int) throws -> Downstream {
        let address = try configuration.address(name, defaultPort: port)
        return Downstream(name: name, host: address.host, port: address.port, maxConcurrent: 8)
    }
    let targets = CompensationTargets(scheduler: try downstream("dronescheduler", DefaultPort.droneScheduler).client,
                                      packages: try downstream("package", DefaultPort.package).client,
                                      delivery: try downstream("delivery", DefaultPort.delivery).client,
                                      flightControl: try downstream("simulator", DefaultPort.simulator).client)
    let (broker, brokerProbes) = try await openBroker(configuration)
    let storeChoice = try serviceStore(configuration, service: "supervisor", file: "supervisor.sqlite")
    let logic = SupervisorServiceLogic(store: try SQLFailedSagaStore(storeChoice.location),
                                       targets: targets, requestQueue: broker, replicaID: configuration.replicaID, logger: host.logger)
    var router = Router()
    logic.register(in: &router)
    try await host.serve(router, background: [{ await logic.runCompensations() }],
                         stores: [storeChoice.probe] + brokerProbes)
}
