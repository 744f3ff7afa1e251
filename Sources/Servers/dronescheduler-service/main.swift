// dronescheduler-service: drones, assignments, utilization (DroneSchedulerService) on 127.0.0.1:50053.
// Follows Delivery's events to free drones whose deliveries ended.
//   --port N  --data-dir DIR  --broker FILE (default DIR/broker.sqlite)
import DroneScheduler
import Messaging
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "broker"])
    let host = ServiceHost(name: "dronescheduler", port: try configuration.int("port", default: DefaultPort.droneScheduler), listenHost: configuration.listenHost)
    let logic = DroneSchedulerServiceLogic(store: try SQLiteDroneStore(path: try databasePath(configuration, file: "dronescheduler.sqlite")))
    let broker = try SQLiteBroker(path: configuration.string("broker", default: try databasePath(configuration, file: "broker.sqlite")))
    let events = try await broker.subscribe(to: "delivery-events", group: "dronescheduler")
    var router = Router()
    logic.register(in: &router)
    try await host.serve(router, background: [{
        await MessageConsumer(queue: broker, queueName: events, consumerName: "dronescheduler").run(logic.handleDeliveryEvent)
    }])
}
