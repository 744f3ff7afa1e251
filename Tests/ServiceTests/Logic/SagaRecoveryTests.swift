import Accounts
import DroneDeliveryAPI
import Foundation
import Ingestion
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Supervisor
import Testing
import TestSupport
@testable import Workflow

/// What happens to a saga, and to its message, when things go wrong around it: its message runs
/// out of deliveries, or lands in the dead letters and an operator puts it back.
@Suite("Saga recovery: last deliveries and dead letters")
struct SagaRecoveryTests {
    @Test("on its message's last delivery an unfinished saga is handed to the Supervisor with what it holds, not run again",
          .timeLimit(.minutes(1)))
    func lastDeliveryCompensates() async throws {
        let folder = try makeTemporaryDirectory("saga-recovery")
        let failedSagas = try SQLiteFailedSagaStore(path: folder.appendingPathComponent("supervisor.sqlite").path)
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)
        let supervisor = SupervisorServiceLogic(store: failedSagas, targets: CompensationTargets(scheduler: unreachable, packages: unreachable,
                                                                                                delivery: unreachable, flightControl: unreachable),
                                                requestQueue: nil)
        var router = Router()
        supervisor.register(in: &router)
        let server = RPCServer(router: router)
        let port = try await server.start()
        let supervisorClient = RPCClient(host: "127.0.0.1", port: port)
        defer { Task { await supervisorClient.close(); await unreachable.close(); await server.shutdown() } }

        // Every other service is down: a saga that runs forward retries (for ever, here) and
        // never finishes, as a saga whose Workflow crashed nine times never did.
        let store = try SQLiteSagaStore(path: folder.appendingPathComponent("workflow.sqlite").path)
        var runner = SagaRunner(store: store, downstreams: SagaDownstreams(accounts: unreachable, packages: unreachable, scheduler: unreachable,
                                                                          delivery: unreachable, supervisor: supervisorClient))
        runner.retry.maxAttempts = 1_000_000
        runner.retry.backoff = JitteredBackoff(initial: .milliseconds(20), maximum: .milliseconds(20))

        let envelope = Self.createEnvelope()
        // Where the earlier deliveries left it: a drone and a package taken, the schedule step retrying.
        var saga = runner.newSaga("msg-1", envelope, payload: try envelope.serializedBytes())
        for index in 0..<3 {
            saga.status.steps[index].state = .succeeded
            saga.status.steps[index].attempts = 1
        }
        saga.status.steps[3].state = .running
        saga.status.steps[3].attempts = 5
        saga.status.state = .retrying
        saga.droneID = "drone-7"
        saga.packageID = "pkg-1"
        try await store.save(saga)

        let message = ReceivedMessage(queue: "delivery-requests", sequence: 1, id: "msg-1", key: "dlv-1", headers: [:],
                                      payload: try envelope.serializedBytes(), deliveryCount: 10, enqueueTime: 0, maxDeliveries: 10)
        #expect(await runner.handle(message) == .acknowledge, "settled: it does not reach the dead letters")
        let failed = try #require(try await failedSagas.saga(id: "msg-1"))
        #expect(Set(failed.compensations.map(\.kind)) == [.markDeliveryFailed, .abortFlight, .releaseDrone, .deletePackage])
        #expect(failed.droneId == "drone-7" && failed.packageId == "pkg-1")
        #expect(failed.failedStep == .scheduleDelivery && failed.error?.message.contains("handed out 10 times") == true)
        #expect(try await store.saga(id: "msg-1")?.status.state == .failed)
        #expect(try await store.saga(id: "msg-1")?.status.steps[3].attempts == 5, "not run again")
    }

    @Test("a step refused by an open circuit breaker waits for it to close, counting no attempt, and goes on",
          .timeLimit(.minutes(1)))
    func openBreakerIsNoAttempt() async throws {
        let folder = try makeTemporaryDirectory("saga-breaker")
        let accounts = try SQLiteAccountStore(path: folder.appendingPathComponent("accounts.sqlite").path)
        var account = AccountsV1.Account()
        account.accountId = "acct"
        account.name = "accounts/acct"
        account.status = .active
        _ = try await accounts.insertAccount(account)
        var router = Router()
        AccountsServiceLogic(store: accounts).register(in: &router)
        let server = RPCServer(router: router)
        let port = try await server.start()
        // Accounts answers, but Workflow's breaker for it is open: it failed once (threshold 1)
        // and rests for 600 ms, refusing calls without making them.
        var settings = CircuitBreaker.Configuration()
        settings.failureThreshold = 1
        settings.openDuration = .milliseconds(600)
        let breaker = CircuitBreaker(name: "accounts", configuration: settings)
        _ = try? await breaker.run { () async throws -> Void in throw RPCError(.unavailable, "test: Accounts failed a call") }
        let accountsClient = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.interceptors = [CircuitBreakerInterceptor(breaker)] })
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)
        defer { Task { await accountsClient.close(); await unreachable.close(); await server.shutdown() } }

        let store = try SQLiteSagaStore(path: folder.appendingPathComponent("workflow.sqlite").path)
        var runner = SagaRunner(store: store, downstreams: SagaDownstreams(accounts: accountsClient, packages: unreachable, scheduler: unreachable,
                                                                          delivery: unreachable, supervisor: unreachable))
        // One attempt per step: a refusal that counted as one would fail the saga at checkAccount.
        runner.retry.maxAttempts = 1
        let envelope = Self.createEnvelope()
        let message = ReceivedMessage(queue: "delivery-requests", sequence: 1, id: "msg-1", key: "dlv-1", headers: [:],
                                      payload: try envelope.serializedBytes(), deliveryCount: 1, enqueueTime: 0, maxDeliveries: 10)
        _ = await runner.handle(message)

        // The account check waited out the breaker and passed on its one attempt; the saga then
        // failed where the services really are down (the package step, on its one attempt).
        let saga = try #require(try await store.saga(id: "msg-1"))
        #expect(saga.status.steps[0].step == .checkAccount)
        #expect(saga.status.steps[0].state == .succeeded, "the refusal failed the step: \(saga.status.steps[0].lastError?.message ?? "")")
        #expect(saga.status.steps[0].attempts == 1)
        #expect(saga.status.steps[1].state == .failed && saga.status.steps[1].attempts == 1)
    }

    @Test("operators list the request queue's dead letters a page at a time and redrive them; a business cannot")
    func deadLetterAPI() async throws {
        let broker = try SQLiteBroker(path: makeTemporaryDirectory("dead-letters").appendingPathComponent("b.sqlite").path)
        let logic = IngestionServiceLogic(queue: broker)
        let operator_ = ServerContext.inProcess()
        let business = ServerContext.inProcess(metadata: Metadata([("x-account-id", "acct-demo")]))
        var ids: [String] = []
        for _ in 0..<3 { ids.append(try await logic.createDelivery(deliveryRequest(), context: operator_).deliveryId) }
        let taken = try await broker.receive(from: IngestionServiceLogic.requestQueue, consumer: "w", maxMessages: 3, lease: .seconds(60))
        try await broker.deadLetter(taken[0], reason: "poison 0")
        try await broker.deadLetter(taken[2], reason: "poison 2")

        var list = IngestionV1.ListDeadLettersRequest()
        list.pageSize = 1
        let first = try await logic.listDeadLetters(list, context: operator_)
        #expect(first.deadLetters.map(\.deliveryId) == [ids[0]] && first.deadLetters.first?.operation == .create)
        #expect(first.deadLetters.first?.reason == "poison 0" && !first.nextPageToken.isEmpty)
        list.pageToken = first.nextPageToken
        let second = try await logic.listDeadLetters(list, context: operator_)
        #expect(second.deadLetters.map(\.deliveryId) == [ids[2]] && second.nextPageToken.isEmpty)
        var one = IngestionV1.ListDeadLettersRequest()
        one.deliveryId = ids[2]
        #expect(try await logic.listDeadLetters(one, context: operator_).deadLetters.map(\.reason) == ["poison 2"])

        func code<T>(_ body: () async throws -> T) async -> RPCError.Code? {
            do { _ = try await body(); return nil } catch { return (error as? RPCError)?.code }
        }
        // The field rules (exactly one of ids and all; ids of digits), as the RPC runtime checks them.
        var redrive = IngestionV1.RedriveDeadLettersRequest()
        #expect(await code { try RPCError.checkFieldRules(redrive) } == .invalidArgument, "neither ids nor all")
        redrive.deadLetterIds = ["not-a-number"]
        #expect(await code { try RPCError.checkFieldRules(redrive) } == .invalidArgument)
        redrive.deadLetterIds = [second.deadLetters[0].deadLetterId]
        #expect(await code { try await logic.redriveDeadLetters(redrive, context: business) } == .permissionDenied)
        #expect(await code { try await logic.listDeadLetters(IngestionV1.ListDeadLettersRequest(), context: business) } == .permissionDenied)
        #expect(try await logic.redriveDeadLetters(redrive, context: operator_).messageIds == [taken[2].id])
        var ask = IngestionV1.GetQueuedDeliveryRequest()
        ask.deliveryId = ids[2]
        #expect(try await logic.getQueuedDelivery(ask, context: operator_).state == .waiting, "back on the queue")
        var all = IngestionV1.RedriveDeadLettersRequest()
        all.all = true
        #expect(try await logic.redriveDeadLetters(all, context: operator_).messageIds == [taken[0].id])
        #expect(try await logic.listDeadLetters(IngestionV1.ListDeadLettersRequest(), context: operator_).deadLetters.isEmpty)
    }

    /// The create message of delivery dlv-1 (message msg-1) for account acct.
    static func createEnvelope() -> IngestionV1.RequestEnvelope {
        var request = IngestionV1.DeliveryRequest()
        request.deliveryId = "dlv-1"
        var owner = CommonV1.Owner()
        owner.accountId = "acct"
        request.owner = owner
        request.pickupLocation = CommonV1.Location(latitude: 47.61, longitude: -122.34)
        request.dropoffLocation = CommonV1.Location(latitude: 47.62, longitude: -122.35)
        var package = CommonV1.PackageInfo()
        package.packageId = "pkg-1"
        package.size = .small
        package.weight = 1
        request.packageInfo = package
        var envelope = IngestionV1.RequestEnvelope()
        envelope.messageId = "msg-1"
        envelope.deliveryId = "dlv-1"
        envelope.operation = .create
        envelope.payload = .create(request)
        return envelope
    }
}
