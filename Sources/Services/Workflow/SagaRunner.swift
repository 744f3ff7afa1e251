import DroneDeliveryAPI
import GRPCProtos
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Storage

/// The clients of the services a saga calls, each behind its own circuit breaker and bulkhead.
public struct SagaDownstreams: Sendable {
    public var accounts: AccountsV1.AccountsService.Client
    public var packages: PackageV1.PackageService.Client
    public var scheduler: DroneSchedulerV1.DroneSchedulerService.Client
    public var delivery: DeliveryV1.DeliveryService.Client
    public var supervisor: SupervisorV1.SupervisorService.Client

    public init(accounts: RPCClient, packages: RPCClient, scheduler: RPCClient, delivery: RPCClient, supervisor: RPCClient) {
        self.accounts = .init(accounts)
        self.packages = .init(packages)
        self.scheduler = .init(scheduler)
        self.delivery = .init(delivery)
        self.supervisor = .init(supervisor)
    }
}

/// How hard a saga step tries before the saga fails.
public struct StepRetryPolicy: Sendable {
    /// Attempts per step in all (across redeliveries and restarts: the count is checkpointed).
    /// Waiting in line for a drone is not an attempt.
    public var maxAttempts = 8
    public var backoff = JitteredBackoff(initial: .milliseconds(200), maximum: .seconds(5))
    /// How long a step waits, in all, on a downstream's open circuit breaker before such
    /// refusals count as attempts. A refused call was never made: the breaker is resting a
    /// downstream that failed other calls (under load, or starved of CPU), so the step waits
    /// for it to close, counting no attempt, rather than spending its attempts in a few
    /// seconds and failing the saga. Past this, a downstream that stays down fails the saga as
    /// any other would.
    public var maxBreakerWait: Duration = .seconds(600)
    public init() {}
}

/// How a create saga waits in line when every drone that could carry its package is busy.
public struct DroneWaitPolicy: Sendable {
    /// Whether a delivery waits in line when no drone is free. Off, "no drone free" is a
    /// RESOURCE_EXHAUSTED step failure retried like any other (the behaviour before the line
    /// existed); kept only as the load-levelling benchmark's baseline.
    public var inLine = true
    /// The service-level limit: the longest a delivery waits for a drone after it was accepted,
    /// unless its own deadline comes first.
    public var maxWait: Duration = .seconds(900)
    /// Between two asks, per place in line: the next in line asks often, the end of a long line
    /// seldom (the drone is kept for it meanwhile, so asking late costs time, never its turn).
    public var pollPerPosition: Duration = .milliseconds(100)
    public var maxPoll: Duration = .seconds(2)
    public init() {}

    func pollInterval(position: Int) -> Duration { min(maxPoll, pollPerPosition * max(1, position)) }
}

/// Runs the saga of one queued request: the steps of its operation in order, each checkpointed,
/// each call carrying the delivery id as its idempotency key; transient failures are retried
/// with backoff; a saga that fails is handed to the Supervisor for compensation.
public struct SagaRunner: Sendable {
    let store: any SagaStore
    let downstreams: SagaDownstreams
    public var retry = StepRetryPolicy()
    public var droneWait = DroneWaitPolicy()
    /// The request queue, to find the owner of a delivery whose create is still queued when its
    /// cancel arrives.
    public var requestQueue: (any MessageQueue)?
    var logger = Logger(label: "fabrikam.workflow")

    public init(store: any SagaStore, downstreams: SagaDownstreams, logger: Logger = Logger(label: "fabrikam.workflow")) {
        self.store = store
        self.downstreams = downstreams
        self.logger = logger
    }

    static func steps(for operation: CommonV1.OperationKind) -> [WorkflowV1.SagaStep] {
        switch operation {
        case .create: [.checkAccount, .putPackage, .assignDrone, .scheduleDelivery]
        case .reschedule: [.rescheduleDelivery]
        case .cancel: [.cancelDelivery, .releaseDrone]
        default: []
        }
    }

    /// Decodes and checks a queued message: the envelope, or why it can never be processed.
    public static func envelope(from message: ReceivedMessage) -> Result<IngestionV1.RequestEnvelope, DeadLetterReason> {
        let envelope: IngestionV1.RequestEnvelope
        do {
            envelope = try IngestionV1.RequestEnvelope(serializedBytes: message.payload)
        } catch {
            return .failure(DeadLetterReason("payload is not a fabrikam.dronedelivery.ingestion.v1.RequestEnvelope: \(error)"))
        }
        if envelope.deliveryId.isEmpty { return .failure(DeadLetterReason("envelope has no delivery_id")) }
        switch (envelope.operation, envelope.payload) {
        case (.create, .create(let request)?):
            if request.packageInfo == nil || request.pickupLocation == nil || request.dropoffLocation == nil || request.owner == nil {
                return .failure(DeadLetterReason("create payload lacks owner, locations or package_info"))
            }
        case (.reschedule, .reschedule?), (.cancel, .cancel?): break
        default:
            return .failure(DeadLetterReason("operation \(envelope.operation) does not match the payload (\(envelope.payload.map { "\($0)".prefix(40) } ?? "none"))"))
        }
        return .success(envelope)
    }

    public struct DeadLetterReason: Error { public let text: String; init(_ text: String) { self.text = text } }

    /// The consumer's handler: runs (or resumes) the saga of the message. On the message's last
    /// delivery an unfinished saga is not run again but failed and handed to the Supervisor, so a
    /// message never reaches the dead letters while its saga holds a drone or a package.
    public func handle(_ message: ReceivedMessage) async -> Disposition {
        let envelope: IngestionV1.RequestEnvelope
        switch Self.envelope(from: message) {
        case .failure(let reason): return .deadLetter(reason: reason.text)
        case .success(let decoded): envelope = decoded
        }
        let sagaID = envelope.messageId.isEmpty ? message.id : envelope.messageId
        do {
            var saga = try await store.saga(id: sagaID) ?? newSaga(sagaID, envelope, payload: message.payload)
            // The request's trace, from the envelope Ingestion queued; with tracing on, a
            // CONSUMER span under Ingestion's PRODUCER span.
            return try await Tracing.withSpan("process \(message.queue)", kind: .consumer, parent: envelope.traceContext,
                                              attributes: [SpanAttribute("messaging.system", "fabrikam"), SpanAttribute("messaging.operation.type", "process"),
                                                           SpanAttribute("messaging.destination.name", message.queue),
                                                           SpanAttribute("messaging.message.id", message.id),
                                                           SpanAttribute("messaging.message.delivery_count", message.deliveryCount),
                                                           SpanAttribute("fabrikam.delivery.id", envelope.deliveryId), SpanAttribute("fabrikam.saga.id", sagaID)]) {
                if message.isFinalDelivery, saga.status.state != .succeeded, saga.status.state != .failed {
                    return try await giveUp(&saga, envelope, because: "the request was handed out \(message.deliveryCount) times without its saga finishing")
                }
                return try await run(&saga, envelope)
            }
        } catch is CancellationError {
            return .postpone(after: .zero)  // shutting down: the message goes back uncounted
        } catch {
            logger.warning("saga could not be checkpointed; the message will come back", metadata: ["saga": "\(sagaID)", "error": "\(error)"])
            // An unavailable store (down, restarting, overloaded) is no fault of the message: it
            // waits uncounted, so an outage does not use up the deliveries and give the saga up
            // when the store is back. On the last delivery a counted retry would dead-letter a
            // saga that may hold a drone.
            return isStoreUnavailable(error) || message.isFinalDelivery ? .postpone(after: .seconds(1)) : .retry(after: .seconds(1))
        }
    }

    func newSaga(_ id: String, _ envelope: IngestionV1.RequestEnvelope, payload: [UInt8]) -> SagaRecord {
        var status = WorkflowV1.SagaStatus()
        status.sagaId = id
        status.deliveryId = envelope.deliveryId
        status.operation = envelope.operation
        status.state = .pending
        status.messageId = envelope.messageId
        status.correlationId = envelope.traceContext?.correlationId ?? ""
        status.createTime = .now
        status.updateTime = status.createTime
        status.steps = Self.steps(for: envelope.operation).map {
            var record = WorkflowV1.SagaStepRecord()
            record.step = $0
            record.state = .pending
            return record
        }
        return SagaRecord(status: status, envelope: payload)
    }

    func run(_ saga: inout SagaRecord, _ envelope: IngestionV1.RequestEnvelope) async throws -> Disposition {
        switch saga.status.state {
        case .succeeded: return .acknowledge
        case .failed: return try await report(&saga, envelope)
        default: break
        }
        saga.status.state = .running
        for index in saga.status.steps.indices where saga.status.steps[index].state != .succeeded {
            saga.status.currentStep = saga.status.steps[index].step
            var breakerWait = Duration.zero
            while true {
                try Task.checkCancellation()
                saga.status.steps[index].state = .running
                saga.status.steps[index].attempts += 1
                if saga.status.steps[index].startTime == nil { saga.status.steps[index].startTime = .now }
                saga.status.updateTime = .now
                try await store.save(saga)
                do {
                    let step = saga.status.steps[index].step
                    // An INTERNAL span per attempt of a step (tracing on); the calls it makes are its children.
                    let sagaID = saga.status.sagaId, deliveryID = saga.status.deliveryId, attempt = Int(saga.status.steps[index].attempts)
                    try await Tracing.withSpan("saga step \(step.protoName ?? "\(step.rawValue)")",
                                               attributes: [SpanAttribute("fabrikam.saga.id", sagaID), SpanAttribute("fabrikam.saga.step", step.protoName ?? ""),
                                                            SpanAttribute("fabrikam.saga.attempt", attempt), SpanAttribute("fabrikam.delivery.id", deliveryID)]) {
                        try await perform(step, &saga, envelope)
                    }
                    saga.status.state = .running
                    saga.status.steps[index].state = .succeeded
                    saga.status.steps[index].endTime = .now
                    saga.status.steps[index].lastError = nil
                    try await store.save(saga)
                    break
                } catch let error as RPCError where error.code == .cancelled && Task.isCancelled {
                    throw CancellationError()  // our shutdown cut the call short: not the step's answer
                } catch let error as RPCError where CircuitBreaker.refusalDelay(error) != nil && breakerWait < retry.maxBreakerWait {
                    // Refused by an open circuit breaker: the call was never made, so it is no
                    // attempt. Wait for the circuit to close (not holding a consumer slot), with
                    // jitter so that the waiting sagas do not all try at once.
                    let pause = max(CircuitBreaker.refusalDelay(error) ?? .zero, .milliseconds(200)) + .milliseconds(Int.random(in: 0...200))
                    breakerWait += pause
                    saga.status.steps[index].attempts -= 1
                    saga.status.state = .retrying
                    saga.status.steps[index].lastError = Self.status(error)
                    try await store.save(saga)
                    try await MessageConsumer.waiting { try await Task.sleep(for: pause) }
                    saga.status.state = .running
                } catch let error as RPCError where error.code.isTransient && saga.status.steps[index].attempts < Int32(retry.maxAttempts) {
                    saga.status.state = .retrying
                    saga.status.steps[index].lastError = Self.status(error)
                    try await store.save(saga)
                    logger.info("step failed, retrying", metadata: ["saga": "\(saga.status.sagaId)", "step": "\(saga.status.steps[index].step)",
                                                                     "attempt": "\(saga.status.steps[index].attempts)", "error": "\(error)"])
                    try await Task.sleep(for: retry.backoff.delay(afterAttempt: Int(saga.status.steps[index].attempts)))
                    saga.status.state = .running
                } catch let rpcError as RPCError {
                    // Anything else (a checkpoint that failed, our own shutdown) is not the
                    // step's answer: it leaves the saga as it is, and the message comes back.
                    saga.status.steps[index].state = .failed
                    saga.status.steps[index].endTime = .now
                    saga.status.steps[index].lastError = Self.status(rpcError)
                    saga.status.state = .failed
                    saga.status.updateTime = .now
                    try await store.save(saga)
                    logger.warning("saga failed", metadata: ["saga": "\(saga.status.sagaId)", "step": "\(saga.status.steps[index].step)", "error": "\(rpcError)"])
                    return try await report(&saga, envelope)
                }
            }
        }
        saga.status.state = .succeeded
        saga.status.currentStep = .unspecified
        saga.status.updateTime = .now
        try await store.save(saga)
        return .acknowledge
    }

    /// One step's call. Every call is idempotent by the delivery id (or the message id for
    /// changes), so repeating a step after a crash or a lost answer changes nothing twice.
    func perform(_ step: WorkflowV1.SagaStep, _ saga: inout SagaRecord, _ envelope: IngestionV1.RequestEnvelope) async throws {
        let options = CallOptions.idempotent()
        switch (step, envelope.payload) {
        case (.checkAccount, .create(let request)?):
            var get = AccountsV1.GetAccountRequest()
            get.name = "accounts/\(request.owner?.accountId ?? "")"
            let account = try await downstreams.accounts.getAccount(get, options: options)
            guard account.status == .active else {
                throw RPCError(.failedPrecondition, "account \(account.accountId) is \(account.status), not ACTIVE")
            }
        case (.putPackage, .create(let request)?):
            var package = PackageV1.Package()
            package.packageId = request.packageInfo?.packageId ?? ""
            package.size = request.packageInfo?.size ?? .unspecified
            package.weight = request.packageInfo?.weight ?? 0
            package.tag = request.packageInfo?.tag ?? ""
            package.ownerId = request.owner?.accountId ?? ""
            package.deliveryId = request.deliveryId
            var put = PackageV1.PutPackageRequest()
            put.package = package
            saga.packageID = package.packageId
            _ = try await downstreams.packages.putPackage(put, options: options)
        case (.assignDrone, .create(let request)?):
            let drone = try await assignDrone(request, &saga, envelope)
            saga.droneID = drone
        case (.scheduleDelivery, .create(let request)?):
            var delivery = DeliveryV1.Delivery()
            delivery.deliveryId = request.deliveryId
            delivery.owner = request.owner
            delivery.pickupLocation = request.pickupLocation
            delivery.dropoffLocation = request.dropoffLocation
            delivery.pickupTime = request.pickupTime
            delivery.deadline = request.deadline
            delivery.expedited = request.expedited
            delivery.confirmationRequired = request.confirmationRequired
            delivery.droneId = saga.droneID
            delivery.packageId = saga.packageID
            var schedule = DeliveryV1.ScheduleDeliveryRequest()
            schedule.delivery = delivery
            _ = try await downstreams.delivery.scheduleDelivery(schedule, options: options)
        case (.rescheduleDelivery, .reschedule(let request)?):
            _ = try await requester(of: envelope)
            var change = DeliveryV1.RescheduleDeliveryRequest()
            change.deliveryId = request.deliveryId
            change.pickupLocation = request.pickupLocation
            change.dropoffLocation = request.dropoffLocation
            change.pickupTime = request.pickupTime
            change.deadline = request.deadline
            change.expedited = request.expedited
            change.operationId = envelope.messageId
            _ = try await downstreams.delivery.rescheduleDelivery(change, options: options)
        case (.cancelDelivery, .cancel(let request)?):
            var cancel = DeliveryV1.CancelDeliveryRequest()
            cancel.deliveryId = request.deliveryId
            cancel.reason = request.reason
            cancel.operationId = envelope.messageId
            // A delivery still waiting to be scheduled is cancelled where it is: Delivery records
            // it as cancelled for its owner, with the locations of its create request (a Delivery
            // has both), and its create saga stops at its next step.
            let requester = try await requester(of: envelope)
            cancel.owner = requester.owner
            cancel.pickupLocation = requester.queued?.pickupLocation
            cancel.dropoffLocation = requester.queued?.dropoffLocation
            let delivery = try await downstreams.delivery.cancelDelivery(cancel, options: options)
            saga.droneID = delivery.droneId
        case (.releaseDrone, .cancel(let request)?):
            var release = DroneSchedulerV1.ReleaseDroneRequest()
            release.deliveryId = request.deliveryId
            release.reason = "cancelled"
            do {
                _ = try await downstreams.scheduler.releaseDrone(release, options: options)
            } catch let error as RPCError where error.code == .notFound {
                // No drone was ever assigned: nothing to release.
            }
        default:
            throw RPCError(.internal, "step \(step) does not apply to operation \(envelope.operation)")
        }
    }

    /// Asks Drone Scheduler for a drone; while every drone that could carry the package is busy,
    /// waits in line for one. Waiting is not a failure: it counts no attempt, opens no circuit
    /// breaker, and holds no consumer slot (`MessageConsumer.waiting`). The line is kept by Drone
    /// Scheduler in order of acceptance, so deliveries get drones first come, first served; the
    /// wait ends with FAILED_PRECONDITION at the delivery's deadline or the service-level limit.
    func assignDrone(_ request: IngestionV1.DeliveryRequest, _ saga: inout SagaRecord, _ envelope: IngestionV1.RequestEnvelope) async throws -> String {
        var assign = DroneSchedulerV1.AssignDroneRequest()
        assign.deliveryId = request.deliveryId
        assign.owner = request.owner
        assign.pickupLocation = request.pickupLocation
        assign.dropoffLocation = request.dropoffLocation
        assign.packageInfo = request.packageInfo
        assign.pickupTime = request.pickupTime
        assign.deadline = request.deadline
        assign.expedited = request.expedited
        assign.requestKey = saga.status.sagaId  // a retried saga (a new id) is assigned afresh
        assign.queuedTime = envelope.acceptTime ?? saga.status.createTime
        assign.wait = droneWait.inLine
        let accepted = (envelope.acceptTime ?? saga.status.createTime ?? .now).secondsSince1970
        let limit = accepted + Double(droneWait.maxWait.components.seconds)
        assign.waitUntil = Timestamp(secondsSince1970: min(limit, request.deadline?.secondsSince1970 ?? limit))
        while true {
            let answer = try await downstreams.scheduler.assignDrone(assign, options: .idempotent())
            guard answer.waiting else { return answer.droneId }
            if saga.status.state != .waiting {
                saga.status.state = .waiting
                saga.status.updateTime = .now
                try await store.save(saga)
            }
            try await MessageConsumer.waiting { try await Task.sleep(for: droneWait.pollInterval(position: Int(answer.position))) }
        }
    }

    /// Who the delivery of a change is for, checking that the change comes from that account.
    /// Delivery knows scheduled deliveries; one still waiting to be scheduled is known from its
    /// create saga here, or from its create message still on the queue: then its create request
    /// comes too (`queued`), for what Delivery needs to record it.
    func requester(of envelope: IngestionV1.RequestEnvelope) async throws -> (owner: CommonV1.Owner, queued: IngestionV1.DeliveryRequest?) {
        var owner: CommonV1.Owner?
        var queued: IngestionV1.DeliveryRequest?
        var get = DeliveryV1.GetDeliveryRequest()
        get.deliveryId = envelope.deliveryId
        do {
            owner = try await downstreams.delivery.getDelivery(get, options: .idempotent()).owner
        } catch let error as RPCError where error.code == .notFound {
            queued = try await queuedCreate(envelope.deliveryId)
            owner = queued?.owner
        }
        guard let owner else { throw RPCError(.notFound, "delivery \(envelope.deliveryId) does not exist") }
        if let requester = envelope.requestedBy?.accountId, !requester.isEmpty, owner.accountId != requester {
            throw RPCError(.permissionDenied, "account \(requester) does not own delivery \(envelope.deliveryId)")
        }
        return (owner, queued)
    }

    /// The delivery's create request (one that names an owner), from its saga or the queue.
    func queuedCreate(_ deliveryID: String) async throws -> IngestionV1.DeliveryRequest? {
        var payloads = try await store.sagas(deliveryID: deliveryID).filter { $0.status.operation == .create }.map(\.envelope)
        if let queue = requestQueue {
            payloads += try await queue.messages(in: RequestQueue.name, key: deliveryID).map(\.payload)
        }
        for payload in payloads {
            if let envelope = try? IngestionV1.RequestEnvelope(serializedBytes: payload), case .create(let request)? = envelope.payload,
               request.owner != nil {
                return request
            }
        }
        return nil
    }

    /// Fails the saga at the step it is on, for a reason outside its steps, and hands it to the
    /// Supervisor to undo what it may hold.
    func giveUp(_ saga: inout SagaRecord, _ envelope: IngestionV1.RequestEnvelope, because reason: String) async throws -> Disposition {
        let index = saga.status.steps.firstIndex { $0.state != .succeeded } ?? max(0, saga.status.steps.count - 1)
        let error = RPCError(.aborted, reason)
        if saga.status.steps.indices.contains(index) {
            saga.status.steps[index].state = .failed
            saga.status.steps[index].endTime = .now
            saga.status.steps[index].lastError = Self.status(error)
        }
        saga.status.state = .failed
        saga.status.updateTime = .now
        try await store.save(saga)
        logger.warning("saga given up", metadata: ["saga": "\(saga.status.sagaId)", "reason": "\(reason)"])
        return try await report(&saga, envelope)
    }

    /// Hands a failed saga to the Supervisor (idempotent by saga id). If the Supervisor cannot be
    /// reached the message comes back later and this is tried again: nothing is dropped.
    func report(_ saga: inout SagaRecord, _ envelope: IngestionV1.RequestEnvelope) async throws -> Disposition {
        if saga.reported { return .acknowledge }
        var failed = SupervisorV1.FailedSaga()
        failed.sagaId = saga.status.sagaId
        failed.deliveryId = saga.status.deliveryId
        failed.operation = saga.status.operation
        if case .create(let request)? = envelope.payload { failed.owner = request.owner } else { failed.owner = envelope.requestedBy }
        let failedStep = saga.status.steps.first { $0.state == .failed }
        failed.failedStep = failedStep?.step ?? .unspecified
        failed.completedSteps = saga.status.steps.filter { $0.state == .succeeded }.map(\.step)
        failed.error = failedStep?.lastError
        failed.attempts = failedStep?.attempts ?? 0
        failed.state = .pending
        failed.failTime = .now
        failed.droneId = saga.droneID
        failed.packageId = saga.packageID
        failed.traceContext = envelope.traceContext
        failed.requestEnvelope = saga.envelope
        failed.compensations = Self.compensations(for: saga).map {
            var compensation = SupervisorV1.Compensation()
            compensation.kind = $0
            compensation.state = .pending
            return compensation
        }
        var request = SupervisorV1.RecordFailedSagaRequest()
        request.saga = failed
        do {
            _ = try await downstreams.supervisor.recordFailedSaga(request, options: .idempotent())
        } catch {
            logger.warning("supervisor unreachable; the failed saga will be reported later", metadata: ["saga": "\(saga.status.sagaId)", "error": "\(error)"])
            // Waiting for the Supervisor is not the message's fault: it must not run out of
            // deliveries (and reach the dead letters) while its saga holds what it took.
            return .postpone(after: .seconds(2))
        }
        saga.reported = true
        try await store.save(saga)
        return .acknowledge
    }

    /// What undoes the effects a failed create saga may have had: every step that was attempted
    /// (an attempt whose answer was lost may still have taken effect) gets its compensation.
    static func compensations(for saga: SagaRecord) -> [SupervisorV1.CompensationKind] {
        guard saga.status.operation == .create else {
            // A cancel or reschedule undoes nothing, but its owner is shown that it failed
            // (not when the request came from another account: that delivery's owner did not ask).
            let error = saga.status.steps.first { $0.state == .failed }?.lastError
            return error?.code == Int32(RPCError.Code.permissionDenied.rawValue) ? [] : [.reportFailedChange]
        }
        let attempted = Set(saga.status.steps.filter { $0.attempts > 0 }.map(\.step))
        var kinds: [SupervisorV1.CompensationKind] = [.markDeliveryFailed]
        if attempted.contains(.scheduleDelivery) { kinds.append(.abortFlight) }
        if attempted.contains(.assignDrone) { kinds.append(.releaseDrone) }
        if attempted.contains(.putPackage) { kinds.append(.deletePackage) }
        return kinds
    }

    static func status(_ error: RPCError) -> Google.Rpc.Status {
        var status = Google.Rpc.Status()
        status.code = Int32(error.code.rawValue)
        status.message = error.message
        return status
    }
}
