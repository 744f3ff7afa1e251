// workflow-service: consumes the request queue and runs each delivery's saga; serves
// WorkflowService (saga status) on 127.0.0.1, port FABRIKAM_PORT_BASE + 6 (ServicePorts).
//   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS  --accounts/--package/--dronescheduler/--delivery/--supervisor HOST:PORT
//   --lease-seconds S (a crashed Workflow's messages return after this)  --concurrency N
//   --step-attempts N  --step-backoff-ms MS (first backoff; doubles up to 5 s)
//   --max-waiting N (sagas waiting in line for a drone, on top of --concurrency)
//   --drone-wait-seconds S (service-level limit on a delivery's wait for a drone, from acceptance)
//   --drone-line 1|0 (0: no waiting in line, "no drone free" retried as a step failure; a benchmark baseline)
import DroneDeliveryAPI
import Messaging
import RPC
import ServiceKit
import Workflow

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "accounts", "package", "dronescheduler", "delivery", "supervisor",
                                                  "lease-seconds", "concurrency", "step-attempts", "step-backoff-ms",
                                                  "max-waiting", "drone-wait-seconds", "drone-line"] + Configuration.storeFlags + Configuration.brokerFlags)
    let host = ServiceHost(name: "workflow", port: try configuration.int("port", default: DefaultPort.workflow), listenHost: configuration.listenHost)
    func downstream(_ name: String, _ port: Int) throws -> Downstream {
        let address = try configuration.address(name, defaultPort: port)
        return Downstream(name: name, host: address.host, port: address.port, maxConcurrent: 16)
    }
    let downstreams = SagaDownstreams(accounts: try downstream("accounts", DefaultPort.accounts).client,
                                      packages: try downstream("package", DefaultPort.package).client,
                                      scheduler: try downstream("dronescheduler", DefaultPort.droneScheduler).client,
                                      delivery: try downstream("delivery", DefaultPort.delivery).client,
                                      supervisor: try downstream("supervisor", DefaultPort.supervisor).client)
    let storeChoice = try serviceStore(configuration, service: "workflow", file: "workflow.sqlite")
    let store = try SQLSagaStore(storeChoice.location)
    var runner = SagaRunner(store: store, downstreams: downstreams, logger: host.logger)
    runner.retry.maxAttempts = try configuration.int("step-attempts", default: 8)
    runner.retry.backoff.initial = .milliseconds(try configuration.int("step-backoff-ms", default: 200))
    runner.droneWait.maxWait = .seconds(try configuration.int("drone-wait-seconds", default: 900))
    switch try configuration.int("drone-line", default: 1) {
    case 1: runner.droneWait.inLine = true
    case 0: runner.droneWait.inLine = false
    case let other: throw ConfigurationError("--drone-line must be 1 (wait in line for a drone) or 0 (benchmark baseline), got \(other)")
    }
    let (broker, brokerProbes) = try await openBroker(configuration)
    runner.requestQueue = broker
    var consumer = MessageConsumer(queue: broker, queueName: "delivery-requests", consumerName: "workflow")
    consumer.lease = .seconds(try configuration.int("lease-seconds", default: 30))
    consumer.concurrency = try configuration.int("concurrency", default: 32)
    consumer.maxWaiting = try configuration.int("max-waiting", default: 1024)
    var router = Router()
    WorkflowServiceLogic(store: store).register(in: &router)
    let sagas = runner
    let requests = consumer
    host.metrics.addCollector {
        var samples = MetricsEndpoint.Sample.perValue(WorkflowV1.SagaState.self, name: "fabrikam_sagas", label: "state",
                                                      counts: (try? await store.countsByState()) ?? [:], help: "Sagas in each state.")
        if let depth = try? await broker.depth(of: "delivery-requests") {
            samples.append(.init("fabrikam_queue_depth", [("queue", "delivery-requests")], value: Double(depth), help: "Messages waiting or leased in a queue."))
        }
        if let dead = try? await broker.deadLetters(of: "delivery-requests") {
            samples.append(.init("fabrikam_queue_dead_letters", [("queue", "delivery-requests")], value: Double(dead.count), help: "Messages in a queue's dead letters."))
        }
        return samples
    }
    try await host.serve(router, background: [{ await requests.run(sagas.handle) }],
                         stores: [storeChoice.probe] + brokerProbes)
}
