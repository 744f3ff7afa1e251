// ingestion-service: accepts delivery requests onto the durable request queue (IngestionService)
// on 127.0.0.1, port FABRIKAM_PORT_BASE + 5 (ServicePorts).   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS
import Ingestion
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"] + Configuration.brokerFlags)
    let host = ServiceHost(name: "ingestion", port: try configuration.int("port", default: DefaultPort.ingestion), listenHost: configuration.listenHost)
    let (broker, brokerProbes) = try await openBroker(configuration)
    var router = Router()
    IngestionServiceLogic(queue: broker).register(in: &router)
    try await host.serve(router, stores: brokerProbes)
}
