import Accounts
import Delivery
import DeliveryHistory
import DroneDeliveryAPI
import DroneScheduler
import Foundation
import Gateway
import Ingestion
import Logging
import Messaging
import Packages
import ProtobufKit
import RPC
import ServiceKit
import Synchronization
import TestSupport

/// The gateway in process, in front of the public services' real logic and SQLite stores, each
/// served by a real RPC server on 127.0.0.1 (port 0); flight control is a stub that accepts
/// every flight. Requests go straight to `Gateway.handle` (no HTTP listener): the tenancy,
/// credential and idempotency tests need dozens of requests against the same data, which the
/// whole system (ten processes) would make slow. Every upstream call's metadata is recorded.
final class InProcessSystem: Sendable {
    let gateway: Gateway
    let directory: URL
    private let servers: [RPCServer]
    private let clients: [RPCClient]
    let recorder: MetadataRecorder
    /// UNAVAILABLE on demand from any of the services (none unless asked).
    let faults: UpstreamFaults
    /// Tracking streams that Delivery cuts short with UNAVAILABLE (none unless asked).
    let streamCuts: StreamCuts
    let packageStorePath: String

    /// An HTTP answer, as a client sees it.
    struct Answer: CustomStringConvertible {
        var status: Int
        var headers: [(name: String, value: String)]
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
        var description: String { "\(status) \(body.prefix(300))" }
    }

    /// - Parameter servicesHideInternalErrors: whether the services run `InternalErrorInterceptor`
    ///   (as `ServiceHost` does); without it, their internal error text reaches the gateway.
    /// - Parameters serverTLS, upstreamTLS: the services serve TLS (mutual with a client CA),
    ///   and the gateway (and Delivery's flight-control client) call them with `upstreamTLS`.
    init(servicesHideInternalErrors: Bool = true, serverTLS: ServerTLS? = nil, upstreamTLS: ClientTLS? = nil,
         _ configure: (inout GatewayConfiguration) -> Void = { _ in }) async throws {
        let directory = try makeTemporaryDirectory("in-process")
        func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
        let recorder = MetadataRecorder()
        let faults = UpstreamFaults()
        var routers: [String: Router] = [:]
        func serve(_ name: String, _ register: (inout Router) -> Void) {
            var router = Router()
            register(&router)
            routers[name] = router
        }
        serve("accounts") { AccountsServiceLogic(store: try! SQLiteAccountStore(path: path("accounts.sqlite"))).register(in: &$0) }
        serve("package") { PackageServiceLogic(store: try! SQLitePackageStore(path: path("package.sqlite"))).register(in: &$0) }
        serve("deliveryhistory") { DeliveryHistoryServiceLogic(store: try! SQLiteHistoryStore(path: path("deliveryhistory.sqlite"))).register(in: &$0) }
        serve("dronescheduler") { DroneSchedulerServiceLogic(store: try! SQLiteDroneStore(path: path("dronescheduler.sqlite"))).register(in: &$0) }
        let broker = try SQLiteBroker(path: path("broker.sqlite"))
        serve("ingestion") { IngestionServiceLogic(queue: broker).register(in: &$0) }
        serve("flightcontrol") { AcceptingFlightControl().register(in: &$0) }

        var servers: [RPCServer] = []
        var ports: [String: Int] = [:]
        func start(_ name: String, _ router: Router) async throws {
            let server = RPCServer(router: router, options: .defaults {
                $0.interceptors = servicesHideInternalErrors ? [recorder, faults, InternalErrorInterceptor(logger: Logger(label: "test.\(name)"))]
                                                             : [recorder, faults]
                $0.tls = serverTLS
            })
            ports[name] = try await server.start()
            servers.append(server)
        }
        for (name, router) in routers { try await start(name, router) }
        let flightControl = RPCClient(host: "127.0.0.1", port: ports["flightcontrol"]!, options: .defaults { $0.tls = upstreamTLS })
        var deliveryRouter = Router()
        let deliveryStore = try SQLiteDeliveryStore(path: path("delivery.sqlite"))
        let deliveryLogic = DeliveryServiceLogic(store: deliveryStore, flightControl: flightControl)
        deliveryLogic.register(in: &deliveryRouter)
        // TrackDelivery as a replica that may go away mid-stream (`streamCuts`), else the real one.
        let streamCuts = StreamCuts()
        deliveryRouter.serverStreaming(DeliveryV1.DeliveryService.Method.TrackDelivery.self) { request, writer, context in
            guard let cut = streamCuts.next(afterSequence: request.afterSequence) else {
                return try await deliveryLogic.trackDelivery(request, writer: writer, context: context)
            }
            for event in try await deliveryStore.trackingEvents(deliveryID: request.deliveryId, after: request.afterSequence).prefix(cut) {
                try await writer.write(event)
            }
            throw RPCError(.unavailable, "injected: the replica went away mid-stream")
        }
        try await start("delivery", deliveryRouter)

        var configuration = GatewayConfiguration()
        for name in ["accounts", "package", "dronescheduler", "delivery", "deliveryhistory", "ingestion"] {
            configuration.upstreams[name] = "127.0.0.1:\(ports[name]!)"
        }
        configure(&configuration)
        gateway = try Gateway(configuration: configuration, upstreamTLS: upstreamTLS)
        self.directory = directory
        self.recorder = recorder
        self.faults = faults
        self.streamCuts = streamCuts
        packageStorePath = path("package.sqlite")
        self.servers = servers
        var clients = [flightControl]
        for name in ["delivery", "deliveryhistory", "accounts", "package"] {
            clients.append(RPCClient(host: "127.0.0.1", port: ports[name]!, options: .defaults { $0.tls = upstreamTLS }))
        }
        self.clients = clients
    }

    var delivery: DeliveryV1.DeliveryService.Client { .init(clients[1]) }
    var history: DeliveryHistoryV1.DeliveryHistoryService.Client { .init(clients[2]) }
    var accounts: AccountsV1.AccountsService.Client { .init(clients[3]) }
    var packages: PackageV1.PackageService.Client { .init(clients[4]) }

    func stop() async {
        await gateway.close()
        for client in clients { await client.close() }
        for server in servers { await server.shutdown() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// One request through the gateway. A streamed answer's body is its first chunk.
    func http(_ method: String, _ target: String, body: String? = nil, key: String?, headers: [(String, String)] = [],
              from address: String = "192.0.2.1") async -> Answer {
        var fields = headers
        if let key { fields.append(("Authorization", "Bearer \(key)")) }
        if body != nil { fields.append(("content-type", "application/json")) }
        var request = GatewayRequest(method: method, target: target, headers: fields, body: Array((body ?? "").utf8))
        request.clientAddress = address
        let response = await gateway.handle(request)
        switch response.body {
        case .bytes(let bytes):
            return Answer(status: response.status, headers: response.headers, body: String(decoding: bytes, as: UTF8.self))
        case .stream(let chunks):
            var first = ""
            for await chunk in chunks {
                first = String(decoding: chunk, as: UTF8.self)
                break
            }
            return Answer(status: response.status, headers: response.headers, body: first)
        }
    }

    /// A streamed answer read to its end (heartbeats left out): status and every chunk.
    func httpStream(_ target: String, key: String?, headers: [(String, String)] = []) async -> Answer {
        var request = GatewayRequest(method: "GET", target: target, headers: headers + (key.map { [("Authorization", "Bearer \($0)")] } ?? []), body: [])
        request.clientAddress = "192.0.2.1"
        let response = await gateway.handle(request)
        var body = ""
        switch response.body {
        case .bytes(let bytes): body = String(decoding: bytes, as: UTF8.self)
        case .stream(let chunks):
            for await chunk in chunks where chunk != Array(": heartbeat\n\n".utf8) { body += String(decoding: chunk, as: UTF8.self) }
        }
        return Answer(status: response.status, headers: response.headers, body: body)
    }

    /// A business registered over the public API: its account id, its admin key and that key's id.
    func register(_ name: String) async throws -> (account: String, key: String, keyID: String) {
        let answer = await http("POST", "/v1/accounts", body: #"{"displayName":"\#(name)","contactEmail":"ops@\#(name.lowercased()).example"}"#, key: nil)
        guard answer.status == 200 || answer.status == 201,
              let account = (answer.json["account"] as? [String: Any])?["accountId"] as? String,
              let adminKey = answer.json["adminKey"] as? [String: Any], let secret = adminKey["secret"] as? String,
              let keyID = (adminKey["apiKey"] as? [String: Any])?["keyId"] as? String else {
            throw TestFailure("registration answered \(answer)")
        }
        return (account, secret, keyID)
    }

    /// A delivery scheduled for `account` the way Workflow schedules one (internal RPC).
    func scheduleDelivery(_ id: String, account: String, packageID: String) async throws {
        var delivery = DeliveryV1.Delivery()
        delivery.deliveryId = id
        var owner = CommonV1.Owner()
        owner.accountId = account
        delivery.owner = owner
        delivery.pickupLocation = CommonV1.Location(latitude: 47.61, longitude: -122.34)
        delivery.dropoffLocation = CommonV1.Location(latitude: 47.62, longitude: -122.35)
        delivery.droneId = "drone-\(id)"
        delivery.packageId = packageID
        var request = DeliveryV1.ScheduleDeliveryRequest()
        request.delivery = delivery
        _ = try await self.delivery.scheduleDelivery(request)
        var event = DeliveryHistoryV1.DeliveryHistoryEvent()
        event.eventId = "evt-\(id)"
        event.deliveryId = id
        event.owner = owner
        event.stage = .created
        event.eventTime = .now
        var record = DeliveryHistoryV1.RecordDeliveryEventRequest()
        record.event = event
        _ = try await history.recordDeliveryEvent(record)
    }
}

/// Flight control that accepts every flight (Delivery dispatches one when it schedules).
struct AcceptingFlightControl: TelemetryV1.FlightControlService.Handler {
    func assignFlight(_ request: TelemetryV1.AssignFlightRequest, context: ServerContext) async throws -> TelemetryV1.AssignFlightResponse {
        var response = TelemetryV1.AssignFlightResponse()
        response.created = true
        return response
    }

    func abortFlight(_ request: TelemetryV1.AbortFlightRequest, context: ServerContext) async throws -> TelemetryV1.AbortFlightResponse {
        TelemetryV1.AbortFlightResponse()
    }
}

/// Records the metadata of every call a server handles, by method name.
final class MetadataRecorder: ServerInterceptor {
    private let calls = Mutex([(method: String, metadata: Metadata)]())

    func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        calls.withLock { $0.append((context.method.name, context.metadata)) }
        try await next(context)
    }

    /// The metadata of the last call of `method`.
    func last(_ method: String) -> Metadata? { calls.withLock { $0.last { $0.method == method }?.metadata } }
}

/// Fails the next calls of a method with UNAVAILABLE (after a pause, if asked), as a replica that
/// is stopping would; counts every call of every method.
final class UpstreamFaults: ServerInterceptor {
    private let state = Mutex((failing: [String: (times: Int, after: Duration)](), calls: [String: Int]()))

    /// The next `times` calls of `method` (its name, "GetDeliveryStatus") fail.
    func fail(_ method: String, times: Int, after pause: Duration = .zero) {
        state.withLock { $0.failing[method] = (times, pause) }
    }

    /// Calls of `method` the server has seen.
    func calls(_ method: String) -> Int { state.withLock { $0.calls[method] ?? 0 } }

    func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        let name = context.method.name
        let pause = state.withLock { state -> Duration? in
            state.calls[name, default: 0] += 1
            guard let failing = state.failing[name], failing.times > 0 else { return nil }
            state.failing[name] = (failing.times - 1, failing.after)
            return failing.after
        }
        guard let pause else { return try await next(context) }
        try? await Task.sleep(for: pause)
        throw RPCError(.unavailable, "injected: the replica is stopping")
    }
}

/// Cuts Delivery's next tracking streams short, as a replica that goes away mid-stream: each
/// entry of `cuts` is one stream that sends that many events and then fails with UNAVAILABLE.
final class StreamCuts: Sendable {
    private let state = Mutex((cuts: [Int](), asked: [Int64]()))

    func cut(_ cuts: [Int]) { state.withLock { $0.cuts = cuts } }

    /// The `after_sequence` of every TrackDelivery call so far.
    var askedAfter: [Int64] { state.withLock { $0.asked } }

    func next(afterSequence: Int64) -> Int? {
        state.withLock { state in
            state.asked.append(afterSequence)
            return state.cuts.isEmpty ? nil : state.cuts.removeFirst()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
