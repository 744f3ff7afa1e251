// ingestion-service: accepts delivery requests onto the durable request queue (IngestionService)
// on 127.0.0.1:50056.   --port N  --data-dir DIR  --broker FILE
import Ingestion
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "broker"])
    let host = ServiceHost(name: "ingestion", port: try configuration.int("port", default: DefaultPort.ingestion), listenHost: configuration.listenHost)
    let broker = try SQLiteBroker(path: configuration.string("broker", default: try databasePath(configuration, file: "broker.sqlite")))
    var router = Router()
    IngestionServiceLogic(queue: broker).register(in: &router)
    try await host.serve(router)
}
