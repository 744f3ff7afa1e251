// deliveryhistory-service: the delivery event log (DeliveryHistoryService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 4,
// fed by the broker's "delivery-events" topic.   --port N  --data-dir DIR  --broker FILE|nats://HOST:PORT  --broker-namespace NS
import DeliveryHistory
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"] + Configuration.storeFlags + Configuration.brokerFlags)
    let host = ServiceHost(name: "deliveryhistory", port: try configuration.int("port", default: DefaultPort.deliveryHistory), listenHost: configuration.listenHost)
    let storeChoice = try serviceStore(configuration, service: "deliveryhistory", file: "deliveryhistory.sqlite")
    let logic = DeliveryHistoryServiceLogic(store: try SQLHistoryStore(storeChoice.location))
    let (broker, brokerProbes) = try await openBroker(configuration)
    let events = try await broker.subscribe(to: "delivery-events", group: "deliveryhistory")
    var router = Router()
    logic.register(in: &router)
    try await host.serve(router, background: [{
        await MessageConsumer(queue: broker, queueName: events, consumerName: "deliveryhistory").run(logic.handleDeliveryEvent)
    }], stores: [storeChoice.probe] + brokerProbes)
}
