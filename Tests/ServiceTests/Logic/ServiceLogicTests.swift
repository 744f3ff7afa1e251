import Accounts
import DroneDeliveryAPI
import DroneScheduler
import Foundation
import Ingestion
import Messaging
import Packages
import ProtobufKit
import RPC
import ServiceKit
@testable import Supervisor
import Testing
import TestSupport
import Workflow

/// Each service's logic in process, with its real SQLite store in a temporary folder.
@Suite("Service logic in process")
struct ServiceLogicTests {
    func path(_ name: String) throws -> String { try makeTemporaryDirectory("logic").appendingPathComponent(name).path }

    /// A failed saga with one compensation still to run: marking its delivery failed.
    static func failedSaga(_ id: String, delivery: String) -> SupervisorV1.FailedSaga {
        var saga = SupervisorV1.FailedSaga()
        saga.sagaId = id
        saga.deliveryId = delivery
        var markFailed = SupervisorV1.Compensation()
        markFailed.kind = .markDeliveryFailed
        markFailed.state = .pending
        saga.compensations = [markFailed]
        return saga
    }

    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256() {
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("Drone Scheduler assigns the nearest drone that can carry the package, once per delivery, never one drone twice")
    func assignment() async throws {
        let logic = DroneSchedulerServiceLogic(store: try SQLiteDroneStore(path: try path("drones.sqlite")))
        let context = ServerContext.inProcess()
        func register(_ id: String, latitude: Double, size: CommonV1.PackageSize, capacity: Double) async throws {
            var drone = DroneSchedulerV1.Drone()
            drone.droneId = id
            drone.capacityKg = capacity
            drone.maxPackageSize = size
            drone.cruiseSpeedMps = 15
            drone.homeLocation = CommonV1.Location(latitude: latitude, longitude: 0)
            var request = DroneSchedulerV1.RegisterDroneRequest()
            request.drone = drone
            _ = try await logic.registerDrone(request, context: context)
        }
        try await register("near-small", latitude: 0.001, size: .small, capacity: 2)
        try await register("far-large", latitude: 0.05, size: .large, capacity: 10)
        try await register("mid-large", latitude: 0.01, size: .large, capacity: 10)
        func assign(_ delivery: String, size: CommonV1.PackageSize, weight: Double) async throws -> DroneSchedulerV1.AssignDroneResponse {
            var request = DroneSchedulerV1.AssignDroneRequest()
            request.deliveryId = delivery
            request.pickupLocation = CommonV1.Location(latitude: 0, longitude: 0)
            request.dropoffLocation = CommonV1.Location(latitude: 0.02, longitude: 0)
            var info = CommonV1.PackageInfo()
            info.size = size
            info.weight = weight
            request.packageInfo = info
            return try await logic.assignDrone(request, context: context)
        }
        #expect(try await assign("d1", size: .large, weight: 4).droneId == "mid-large", "nearest that can carry it")
        let again = try await assign("d1", size: .large, weight: 4)
        #expect(again.droneId == "mid-large" && !again.created, "idempotent per delivery")
        // Many deliveries at once for two free drones: exactly two get one, each a different drone.
        let results = await withTaskGroup(of: String?.self) { group in
            for index in 0..<10 { group.addTask { try? await assign("c\(index)", size: .small, weight: 1).droneId } }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        let assigned = results.compactMap { $0 }
        #expect(assigned.count == 2 && Set(assigned) == ["near-small", "far-large"])
        await #expect { try await assign("none", size: .small, weight: 1) } throws: { ($0 as? RPCError)?.code == .resourceExhausted }
    }

    @Test("Package create-or-replace answers created once, keeps the create time, validates with field names")
    func packagePut() async throws {
        let logic = PackageServiceLogic(store: try SQLitePackageStore(path: try path("packages.sqlite")))
        var package = PackageV1.Package()
        package.packageId = "p1"
        package.size = .medium
        package.weight = 2
        package.ownerId = "acct"
        var request = PackageV1.PutPackageRequest()
        request.package = package
        let first = try await logic.putPackage(request, context: .inProcess())
        let second = try await logic.putPackage(request, context: .inProcess())
        #expect(first.created && !second.created)
        #expect(first.package?.createTime == second.package?.createTime)
        request.package?.weight = -1
        request.package?.size = .unspecified
        // The field rules, as the RPC runtime checks them before the handler runs.
        await #expect { try RPCError.checkFieldRules(request); _ = try await logic.putPackage(request, context: .inProcess()) } throws: { error in
            let message = (error as? RPCError)?.message ?? ""
            return message.contains("package.weight") && message.contains("package.size")
        }
        var summary = PackageV1.GetPackageSummaryRequest()
        summary.ownerId = "acct"
        let totals = try await logic.getPackageSummary(summary, context: .inProcess())
        #expect(totals.packageCount == 1 && totals.totalWeight == 2)
    }

    @Test("Accounts: an issued key validates until it is revoked; only its hash is stored")
    func apiKeys() async throws {
        let file = try path("accounts.sqlite")
        let logic = AccountsServiceLogic(store: try SQLiteAccountStore(path: file))
        var register = AccountsV1.RegisterAccountRequest()
        register.displayName = "Contoso"
        register.contactEmail = "ops@contoso.example"
        register.requestId = "signup-1"
        let account = try await logic.registerAccount(register, context: .inProcess())
        #expect(try await logic.registerAccount(register, context: .inProcess()).account?.accountId == account.account?.accountId)
        var issue = AccountsV1.IssueApiKeyRequest()
        issue.accountId = account.account!.accountId
        let key = try await logic.issueApiKey(issue, context: .inProcess())
        var validate = AccountsV1.ValidateApiKeyRequest()
        validate.secret = key.secret
        #expect(try await logic.validateApiKey(validate, context: .inProcess()).valid)
        let raw = try Data(contentsOf: URL(fileURLWithPath: file)) + ((try? Data(contentsOf: URL(fileURLWithPath: file + "-wal"))) ?? Data())
        #expect(raw.range(of: Data(key.secret.utf8)) == nil, "the secret is not in the database file")
        var revoke = AccountsV1.RevokeApiKeyRequest()
        revoke.accountId = issue.accountId
        revoke.keyId = key.apiKey!.keyId
        _ = try await logic.revokeApiKey(revoke, context: .inProcess())
        let after = try await logic.validateApiKey(validate, context: .inProcess())
        #expect(!after.valid && after.keyStatus == .revoked)
        validate.secret = "fdk_not-a-key"
        #expect(try await logic.validateApiKey(validate, context: .inProcess()).valid == false)
    }

    /// The field rules (checked by the RPC runtime before a handler runs, as here) and the two
    /// checks Ingestion keeps (an owner's account id, a deadline after the pickup time).
    @Test("Ingestion names every invalid field and queues nothing for a bad request")
    func ingestionValidation() async throws {
        let broker = try SQLiteBroker(path: try path("broker.sqlite"))
        let logic = IngestionServiceLogic(queue: broker)
        func fields(_ error: any Error) -> [String] {
            ((try? (error as? RPCError)?.detail(Google.Rpc.BadRequest.self)) ?? nil)?.fieldViolations.map(\.field) ?? []
        }
        var request = IngestionV1.CreateDeliveryRequest()
        request.pickupLocation = CommonV1.Location(latitude: 123, longitude: 0)
        await #expect { try RPCError.checkFieldRules(request); _ = try await logic.createDelivery(request, context: .inProcess()) } throws: { error in
            (error as? RPCError)?.code == .invalidArgument && fields(error) == ["owner", "pickup_location.latitude", "dropoff_location", "package_info"]
        }
        request.owner = CommonV1.Owner()
        request.pickupLocation = CommonV1.Location(latitude: 47.61, longitude: -122.34)
        request.dropoffLocation = CommonV1.Location(latitude: 47.62, longitude: -122.35)
        request.packageInfo = CommonV1.PackageInfo()
        request.packageInfo!.size = .small
        request.packageInfo!.weight = 1
        request.pickupTime = Timestamp(secondsSince1970: 2000)
        request.deadline = Timestamp(secondsSince1970: 1000)
        #expect(request.validationViolations().isEmpty)
        await #expect { _ = try await logic.createDelivery(request, context: .inProcess()) } throws: { error in
            (error as? RPCError)?.code == .invalidArgument && fields(error) == ["owner.account_id", "deadline"]
        }
        #expect(try await broker.depth(of: IngestionServiceLogic.requestQueue) == 0)
    }

    @Test("ListFailedSagas takes at most 16 states, each one the schema defines (the store's SQL has one placeholder per state)")
    func failedSagaStateFilterBounded() {
        var request = SupervisorV1.ListFailedSagasRequest()
        request.states = Array(repeating: .pending, count: 16)
        #expect(request.validationViolations().isEmpty)
        request.states.append(.compensating)
        #expect(request.validationViolations().map { "\($0.field) \($0.ruleID)" } == ["states repeated.max_items"])
        request.states = [.pending, SupervisorV1.FailedSagaState(rawValue: 99)]
        #expect(request.validationViolations().map { "\($0.field) \($0.ruleID)" } == ["states[1] enum.defined_only"])
    }

    @Test("Ingestion reports a queued delivery (waiting, in progress, dead-lettered) to its owner only, and not once it is done")
    func queuedDelivery() async throws {
        let broker = try SQLiteBroker(path: try path("broker.sqlite"))
        let logic = IngestionServiceLogic(queue: broker)
        let owner = ServerContext.inProcess(metadata: Metadata([("x-account-id", "acct-demo")]))
        let stranger = ServerContext.inProcess(metadata: Metadata([("x-account-id", "acct-b")]))
        let create = deliveryRequest()  // for acct-demo
        let accepted = try await logic.createDelivery(create, context: owner)
        var cancel = IngestionV1.CancelDeliveryRequest()
        cancel.deliveryId = accepted.deliveryId
        _ = try await logic.cancelDelivery(cancel, context: owner)  // same key: passed over
        var ask = IngestionV1.GetQueuedDeliveryRequest()
        ask.deliveryId = accepted.deliveryId
        func isNotFound(_ context: ServerContext) async -> Bool {
            do { _ = try await logic.getQueuedDelivery(ask, context: context); return false } catch { return (error as? RPCError)?.code == .notFound }
        }

        let waiting = try await logic.getQueuedDelivery(ask, context: owner)
        #expect(waiting.state == .waiting && waiting.attempts == 0)
        #expect(waiting.owner?.accountId == "acct-demo" && waiting.acceptTime == accepted.acceptTime)
        #expect(await isNotFound(stranger), "another business's queued delivery does not exist for it")

        let taken = try #require(try await broker.receive(from: IngestionServiceLogic.requestQueue, consumer: "w", maxMessages: 1, lease: .seconds(30)).first)
        let inProgress = try await logic.getQueuedDelivery(ask, context: .inProcess())
        #expect(inProgress.state == .inProgress && inProgress.attempts == 1)

        try await broker.deadLetter(taken, reason: "poison")
        let dead = try await logic.getQueuedDelivery(ask, context: owner)
        #expect(dead.state == .deadLettered && dead.deadLetterReason == "poison")

        ask.deliveryId = "dlv-never-accepted"
        #expect(await isNotFound(owner))
        // Done with: a second create, taken and acknowledged as Workflow does once it is scheduled.
        let second = try await logic.createDelivery(create, context: owner)
        ask.deliveryId = second.deliveryId
        #expect(try await logic.getQueuedDelivery(ask, context: owner).state == .waiting)
        let messages = try await broker.receive(from: IngestionServiceLogic.requestQueue, consumer: "w", maxMessages: 10, lease: .seconds(30))
        for message in messages where message.key == second.deliveryId { try await broker.acknowledge(message) }
        #expect(await isNotFound(owner))
        await #expect(throws: RPCError.self) { try await logic.getQueuedDelivery(IngestionV1.GetQueuedDeliveryRequest(), context: owner) }
    }

    @Test("Workflow dead-letters envelopes it can never run, naming why")
    func envelopeChecks() throws {
        func reason(_ payload: [UInt8]) -> String? {
            let message = ReceivedMessage(queue: "q", sequence: 1, id: "m", key: "", headers: [:], payload: payload, deliveryCount: 1, enqueueTime: 0)
            if case .failure(let reason) = SagaRunner.envelope(from: message) { return reason.text }
            return nil
        }
        #expect(reason([0x0a, 0xff])?.contains("RequestEnvelope") == true)
        var envelope = IngestionV1.RequestEnvelope()
        envelope.deliveryId = "d"
        envelope.operation = .reschedule
        envelope.payload = .cancel(IngestionV1.CancelRequest())
        #expect(reason(try envelope.serializedBytes())?.contains("does not match") == true)
        envelope.operation = .cancel
        #expect(reason(try envelope.serializedBytes()) == nil)
    }
}

@Suite("The Supervisor's compensation loop")
struct SupervisorLoopTests {
    @Test("a recorded failed saga is compensated at once, not a round later")
    func recordedSagaWakesTheLoop() async throws {
        let store = try SQLiteFailedSagaStore(path: try makeTemporaryDirectory("supervisor").appendingPathComponent("sagas.sqlite").path)
        // Nothing listens on port 1: each compensation fails fast and is counted as an attempt.
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)
        let logic = SupervisorServiceLogic(store: store, targets: CompensationTargets(scheduler: unreachable, packages: unreachable, delivery: unreachable,
                                                                                       flightControl: unreachable), requestQueue: nil)
        func record(_ id: String) async throws {
            var request = SupervisorV1.RecordFailedSagaRequest()
            request.saga = ServiceLogicTests.failedSaga(id, delivery: "dlv-\(id)")
            _ = try await logic.recordFailedSaga(request, context: .inProcess())
        }
        func attempted(_ id: String) async throws {
            try await waitFor("a compensation of \(id) to be attempted", timeout: .seconds(30)) {
                try await store.saga(id: id)?.compensations.first?.attempts ?? 0 >= 1
            }
        }
        // Rounds an hour apart: after the round that handles the first saga the loop sleeps, and
        // only a wake-up can start another one within the test.
        let loop = Task { await logic.runCompensations(interval: .seconds(3600)) }
        defer { loop.cancel() }
        try await record("saga-1")
        try await attempted("saga-1")
        try await record("saga-2")
        try await attempted("saga-2")
    }

    @Test("a manual compensation of a saga another replica has claimed answers ABORTED naming it, and leaves the saga alone; once the claim ends it runs")
    func manualCompensationOfAClaimedSaga() async throws {
        let store = try SQLiteFailedSagaStore(path: try makeTemporaryDirectory("supervisor-claims").appendingPathComponent("sagas.sqlite").path)
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)  // every compensation fails fast
        defer { Task { await unreachable.close() } }
        let logic = SupervisorServiceLogic(store: store, targets: CompensationTargets(scheduler: unreachable, packages: unreachable, delivery: unreachable,
                                                                                       flightControl: unreachable), requestQueue: nil, replicaID: "replica-1")
        let saga = ServiceLogicTests.failedSaga("saga-claimed", delivery: "dlv-claimed")
        var record = SupervisorV1.RecordFailedSagaRequest()
        record.saga = saga
        _ = try await logic.recordFailedSaga(record, context: .inProcess())
        // Replica 2's round holds it.
        let claimed = try await store.claimDue(now: Timestamp.now.secondsSince1970, limit: 10, holder: "replica-2", for: .seconds(120))
        #expect(claimed.map(\.sagaId) == ["saga-claimed"])
        var request = SupervisorV1.CompensateFailedSagaRequest()
        request.sagaId = saga.sagaId
        do {
            _ = try await logic.compensateFailedSaga(request, context: .inProcess())
            Issue.record("compensated a saga another replica holds")
        } catch let error as RPCError {
            #expect(error.code == .aborted)
            #expect(error.message.contains("another replica (replica-2)"), "\(error.message)")
        }
        #expect(try await store.saga(id: saga.sagaId)?.compensations.first?.attempts == 0, "nothing was attempted")
        // Replica 2's round ends (saved); now the manual compensation runs.
        try await store.save(claimed[0], nextAttempt: 0, holder: "replica-2")
        let compensated = try await logic.compensateFailedSaga(request, context: .inProcess())
        #expect(compensated.compensations.first?.attempts == 1)
        #expect(try await store.saga(id: saga.sagaId)?.compensations.first?.attempts == 1)
    }

    @Test("a retry of a saga another replica holds answers ABORTED naming it and queues nothing; once the claim ends it queues the request once and ends its own claim")
    func retryOfAClaimedSaga() async throws {
        let directory = try makeTemporaryDirectory("supervisor-retry-claims")
        let store = try SQLiteFailedSagaStore(path: directory.appendingPathComponent("sagas.sqlite").path)
        let broker = try SQLiteBroker(path: directory.appendingPathComponent("broker.sqlite").path)
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)
        defer { Task { await unreachable.close() } }
        let logic = SupervisorServiceLogic(store: store, targets: CompensationTargets(scheduler: unreachable, packages: unreachable, delivery: unreachable,
                                                                                       flightControl: unreachable), requestQueue: broker, replicaID: "replica-1")
        var saga = ServiceLogicTests.failedSaga("saga-retry", delivery: "dlv-retry")
        saga.state = .compensated
        var envelope = IngestionV1.RequestEnvelope()
        envelope.deliveryId = "dlv-retry"
        envelope.operation = .create
        envelope.payload = .create(IngestionV1.DeliveryRequest())
        saga.requestEnvelope = try envelope.serializedBytes()
        _ = try await store.insert(saga)
        // Replica 2 is re-running the saga's compensation (a manual CompensateFailedSaga).
        guard case .claimed(let held) = try await store.claim(id: saga.sagaId, holder: "replica-2", for: .seconds(120)) else {
            Issue.record("replica 2 could not claim the saga")
            return
        }
        var request = SupervisorV1.RetryFailedSagaRequest()
        request.sagaId = saga.sagaId
        do {
            _ = try await logic.retryFailedSaga(request, context: .inProcess())
            Issue.record("retried a saga another replica holds")
        } catch let error as RPCError {
            #expect(error.code == .aborted)
            #expect(error.message.contains("another replica (replica-2)"), "\(error.message)")
        }
        // The refused retry returned: anything it queued would be there now.
        #expect(try await broker.receive(from: RequestQueue.name, consumer: "check", maxMessages: 10, lease: .seconds(60)).isEmpty)
        #expect(try await store.saga(id: saga.sagaId)?.state == .compensated)

        try await store.save(held, nextAttempt: nil, holder: "replica-2")  // replica 2's re-run ends
        let retried = try await logic.retryFailedSaga(request, context: .inProcess())
        #expect(retried.state == .retrying && retried.forwardRetries == 1)
        #expect(try await store.saga(id: saga.sagaId)?.state == .retrying)
        let queued = try await broker.receive(from: RequestQueue.name, consumer: "check", maxMessages: 10, lease: .seconds(60))
        #expect(queued.map(\.id) == ["saga-retry:retry-1"])
        // The retry's save ended its claim: another replica can claim the saga at once.
        if case .heldBy(let holder) = try await store.claim(id: saga.sagaId, holder: "replica-3", for: .seconds(1)) {
            Issue.record("the retry left its claim (held by \(holder))")
        }
    }

    @Test("each compensation attempt is an INTERNAL span in the failed saga's trace, a child of the span the saga was handed over in, with an error when it failed")
    func compensationSpans() async throws {
        let store = try SQLiteFailedSagaStore(path: try makeTemporaryDirectory("supervisor-spans").appendingPathComponent("sagas.sqlite").path)
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)  // every compensation fails fast
        // Never started: its spans stay queued, for the test to read.
        let recorder = SpanRecorder(host: "127.0.0.1", port: 1, serviceName: "supervisor-test")
        let logic = SupervisorServiceLogic(store: store, targets: CompensationTargets(scheduler: unreachable, packages: unreachable, delivery: unreachable,
                                                                                       flightControl: unreachable), requestQueue: nil, recorder: recorder)
        let traceID = randomHex(bytes: 16), sagaSpan = randomHex(bytes: 8)
        var saga = SupervisorV1.FailedSaga()
        saga.sagaId = "saga-spans"
        saga.deliveryId = "dlv-spans"
        var trace = CommonV1.TraceContext()
        trace.traceparent = "00-\(traceID)-\(sagaSpan)-01"
        saga.traceContext = trace
        saga.compensations = [SupervisorV1.CompensationKind.releaseDrone, .markDeliveryFailed].map { kind in
            var compensation = SupervisorV1.Compensation()
            compensation.kind = kind
            compensation.state = .pending
            return compensation
        }
        var record = SupervisorV1.RecordFailedSagaRequest()
        record.saga = saga
        _ = try await logic.recordFailedSaga(record, context: .inProcess())
        var request = SupervisorV1.CompensateFailedSagaRequest()
        request.sagaId = saga.sagaId
        _ = try await logic.compensateFailedSaga(request, context: .inProcess())
        await unreachable.close()

        let spans = recorder.queuedSpans
        #expect(spans.map(\.name).sorted() == ["compensation COMPENSATION_KIND_MARK_DELIVERY_FAILED", "compensation COMPENSATION_KIND_RELEASE_DRONE"],
                "\(spans.map(\.name))")
        for span in spans {
            #expect(span.traceID == traceID && span.parentSpanID == sagaSpan && span.spanID != sagaSpan, "\(span)")
            #expect(span.kind == .internal)
            #expect(span.error != nil, "the compensating call failed: \(span)")
            #expect(span.attributes.contains { $0.key == "fabrikam.saga.id" && $0.value == .string("saga-spans") })
        }
    }

    // No timing bounds on the wake-ups (the machine is shared with other tests): a lost wake-up
    // shows as a wait of an hour, which the time limit turns into a failure.
    @Test("a wake-up ends a wait; one with nobody waiting is kept for the next; a wait without one lasts its interval",
          .timeLimit(.minutes(1)))
    func wakeups() async {
        let wakeup = Wakeup()
        let waker = Task {
            try? await Task.sleep(for: .milliseconds(100))
            wakeup.wake()
        }
        await wakeup.wait(atMost: .seconds(3600))  // woken while waiting (or just before)
        await waker.value
        wakeup.wake()
        await wakeup.wait(atMost: .seconds(3600))  // woken before waiting
        let clock = ContinuousClock()
        #expect(await clock.measure { await wakeup.wait(atMost: .milliseconds(300)) } >= .milliseconds(300))
        let cancelled = Task { await wakeup.wait(atMost: .seconds(3600)) }
        cancelled.cancel()
        await cancelled.value  // a cancelled wait ends
    }
}
