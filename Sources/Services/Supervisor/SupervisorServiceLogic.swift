import DroneDeliveryAPI
import GRPCProtos
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Synchronization

/// The services a compensation calls.
public struct CompensationTargets: Sendable {
    public var scheduler: DroneSchedulerV1.DroneSchedulerService.Client
    public var packages: PackageV1.PackageService.Client
    public var delivery: DeliveryV1.DeliveryService.Client
    public var flightControl: TelemetryV1.FlightControlService.Client

    public init(scheduler: RPCClient, packages: RPCClient, delivery: RPCClient, flightControl: RPCClient) {
        self.scheduler = .init(scheduler)
        self.packages = .init(packages)
        self.delivery = .init(delivery)
        self.flightControl = .init(flightControl)
    }
}

/// Supervisor (scheduler-agent-supervisor): records failed sagas and compensates them: release
/// the drone, abort the flight, delete the package, mark the delivery failed. Each compensation is
/// retried with backoff until it succeeds (or is found to have nothing to undo).
///
/// Replicas share the store: each compensates only the sagas it has claimed (as `replicaID`),
/// so every due saga is worked on by exactly one replica at a time.
public final class SupervisorServiceLogic: SupervisorV1.SupervisorService.Handler {
    /// How long a claim on a saga lasts: a round is at most a few compensating calls of at most
    /// a few seconds each; a replica that dies mid-round leaves its claims to expire after this.
    public static let claimLength = Duration.seconds(120)

    let store: any FailedSagaStore
    /// The holder of this process's claims.
    public let replicaID: String
    let targets: CompensationTargets
    let requestQueue: (any MessageQueue)?
    let logger: Logger
    let recorder: SpanRecorder?
    /// The wait between two attempts at one compensation: 1 s, doubling up to 30 s, jittered.
    public let backoff = JitteredBackoff(initial: .seconds(1), maximum: .seconds(30))
    /// Wakes `runCompensations` before its interval is up: a saga just recorded is compensated
    /// at once (its delivery shows Failed, its drone is free again) rather than up to a round later.
    private let wakeup = Wakeup()

    /// - Parameters:
    ///   - replicaID: this replica's name as a claim holder; unique among the replicas sharing `store`.
    ///   - recorder: where the compensations' spans go (the process's, by default).
    public init(store: any FailedSagaStore, targets: CompensationTargets, requestQueue: (any MessageQueue)?, replicaID: String = ReplicaID.process,
                logger: Logger = Logger(label: "fabrikam.supervisor"), recorder: SpanRecorder? = Tracing.recorder) {
        self.replicaID = replicaID
        self.recorder = recorder
        self.store = store
        self.targets = targets
        self.requestQueue = requestQueue
        self.logger = logger
    }

    public func recordFailedSaga(_ request: SupervisorV1.RecordFailedSagaRequest, context: ServerContext) async throws -> SupervisorV1.RecordFailedSagaResponse {
        guard var saga = request.saga else { throw RPCError(.invalidArgument, "saga is required") }
        // saga.saga_id and saga.delivery_id are required (field rules).
        saga.state = saga.compensations.isEmpty ? .resolved : .pending
        saga.updateTime = .now
        if saga.failTime == nil { saga.failTime = saga.updateTime }
        let stored = try await store.insert(saga)
        if stored.created, saga.state == .pending { wakeup.wake() }
        var response = SupervisorV1.RecordFailedSagaResponse()
        response.saga = stored.saga
        response.created = stored.created
        return response
    }

    public func listFailedSagas(_ request: SupervisorV1.ListFailedSagasRequest, context: ServerContext) async throws -> SupervisorV1.ListFailedSagasResponse {
        let page = try Page(token: request.pageToken, size: request.pageSize)
        let sagas = try await store.list(states: request.states, deliveryID: request.deliveryId, offset: page.offset, limit: page.fetchLimit)
        var response = SupervisorV1.ListFailedSagasResponse()
        (response.sagas, response.nextPageToken) = page.cut(sagas)
        return response
    }

    public func getFailedSaga(_ request: SupervisorV1.GetFailedSagaRequest, context: ServerContext) async throws -> SupervisorV1.FailedSaga {
        try await existing(request.sagaId)
    }

    public func retryFailedSaga(_ request: SupervisorV1.RetryFailedSagaRequest, context: ServerContext) async throws -> SupervisorV1.FailedSaga {
        // Claimed first, like a manual compensation: a retry must not queue the request again
        // while a compensation (re-run) of the same saga, or another retry, is in progress.
        var saga: SupervisorV1.FailedSaga
        switch try await store.claim(id: request.sagaId, holder: replicaID, for: Self.claimLength) {
        case .claimed(let claimed): saga = claimed
        case .notFound: throw RPCError(.notFound, "no failed saga \(request.sagaId)")
        case .heldBy(let holder):
            throw RPCError(.aborted, "saga \(request.sagaId) is being handled by \(holder == replicaID ? "this replica" : "another replica (\(holder.isEmpty ? "unknown" : holder))"); try again once it is done")
        }
        do {
            guard saga.state == .compensated || saga.state == .resolved else {
                throw RPCError(.failedPrecondition, "saga \(saga.sagaId) is \(saga.state); retry it once its compensation has finished")
            }
            guard let queue = requestQueue, !saga.requestEnvelope.isEmpty else {
                throw RPCError(.failedPrecondition, "saga \(saga.sagaId) has no stored request to queue again")
            }
            var envelope = try IngestionV1.RequestEnvelope(storedBytes: saga.requestEnvelope, what: "request envelope")
            // A new saga id for each forward retry, so the retried saga runs afresh (and is assigned
            // a drone afresh); `attempts` stays what it says, the attempts at the failed step.
            envelope.messageId = "\(saga.sagaId):retry-\(saga.forwardRetries + 1)"
            let message = OutgoingMessage(id: envelope.messageId, key: RequestQueue.key(envelope.operation, deliveryID: envelope.deliveryId),
                                          headers: envelope.traceContext.map(RequestTrace.headers) ?? [:], payload: try envelope.serializedBytes())
            _ = try await queue.send(message, to: RequestQueue.name)
            saga.state = .retrying
            saga.forwardRetries += 1
            saga.updateTime = .now
        } catch {
            try? await store.release(id: saga.sagaId, holder: replicaID)
            throw error
        }
        do {
            // A retried saga has no compensation due (nextAttempt nil); the save ends the claim.
            try await store.save(saga, nextAttempt: nil, holder: replicaID)
        } catch let lost as ClaimLost {
            // The message went out with its id (the broker drops a repeat of it), but the saga's
            // record now belongs to whoever took it over.
            throw RPCError(.aborted, "saga \(request.sagaId) was taken over by another replica while this one retried it; the retry was queued, its record was not saved (\(lost))")
        }
        return saga
    }

    public func compensateFailedSaga(_ request: SupervisorV1.CompensateFailedSagaRequest, context: ServerContext) async throws -> SupervisorV1.FailedSaga {
        // Claimed first: a saga that a round (of any replica) is compensating is not run twice at once.
        var saga: SupervisorV1.FailedSaga
        switch try await store.claim(id: request.sagaId, holder: replicaID, for: Self.claimLength) {
        case .claimed(let claimed): saga = claimed
        case .notFound: throw RPCError(.notFound, "no failed saga \(request.sagaId)")
        case .heldBy(let holder):
            let who = holder == replicaID ? "this replica's compensation round" : "another replica (\(holder.isEmpty ? "unknown" : holder))"
            throw RPCError(.aborted, "saga \(request.sagaId) is being compensated by \(who); try again once its round is over")
        }
        if request.rerunSucceeded {
            for index in saga.compensations.indices { saga.compensations[index].state = .pending }
        }
        do {
            return try await compensate(saga)
        } catch let lost as ClaimLost {
            throw RPCError(.aborted, "saga \(request.sagaId) was taken over by another replica while this one compensated it; this attempt's result was dropped (\(lost))")
        }
    }

    /// Works through due compensations until cancelled: claims what is due (what no other
    /// replica holds) and compensates it.
    public func runCompensations(interval: Duration = .milliseconds(500)) async {
        while !Task.isCancelled {
            do {
                for saga in try await store.claimDue(now: Timestamp.now.secondsSince1970, limit: 32, holder: replicaID, for: Self.claimLength) {
                    do {
                        _ = try await compensate(saga)
                    } catch let lost as ClaimLost {
                        // Stalled past the claim: another replica has the saga; its result stands.
                        logger.warning("compensation round's result dropped: claim lost", metadata: ["saga": "\(lost.sagaID)"])
                    } catch let error where !(error is CancellationError) {
                        // Not saved (the store failed): the claim expires and the saga comes round again.
                        logger.warning("compensation round not saved", metadata: ["saga": "\(saga.sagaId)", "error": "\(error)"])
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("compensation round failed", metadata: ["error": "\(error)"])
            }
            await wakeup.wait(atMost: interval)
        }
    }

    /// Runs every pending compensation of the saga once; schedules the next round for those
    /// that failed. The saga must be claimed by `replicaID`; the save ends the claim, or throws
    /// `ClaimLost` (saving nothing) when the claim was taken over meanwhile.
    func compensate(_ saga: SupervisorV1.FailedSaga) async throws -> SupervisorV1.FailedSaga {
        var saga = saga
        saga.state = .compensating
        var nextAttempt: Double?
        for index in saga.compensations.indices where saga.compensations[index].state == .pending {
            let kind = saga.compensations[index].kind
            saga.compensations[index].attempts += 1
            saga.compensations[index].lastAttemptTime = .now
            do {
                // A span per repair step, in the failed saga's trace (its parent is the span that
                // was current when the saga was handed over), so the undoing calls sit under it.
                let attempt = Int(saga.compensations[index].attempts)
                let didSomething = try await Tracing.withSpan("compensation \(kind.protoName ?? "\(kind.rawValue)")", kind: .internal,
                                                              parent: saga.traceContext, recorder: recorder,
                                                              attributes: [SpanAttribute("fabrikam.saga.id", saga.sagaId),
                                                                           SpanAttribute("fabrikam.delivery.id", saga.deliveryId),
                                                                           SpanAttribute("fabrikam.compensation.attempt", attempt)]) {
                    try await perform(kind, saga)
                }
                saga.compensations[index].state = didSomething ? .succeeded : .skipped
                saga.compensations[index].lastError = nil
                saga.compensations[index].nextAttemptTime = nil
            } catch {
                let rpcError = error as? RPCError ?? RPCError(.internal, "\(error)")
                var status = Google.Rpc.Status()
                status.code = Int32(rpcError.code.rawValue)
                status.message = rpcError.message
                saga.compensations[index].lastError = status
                let delay = backoff.delay(afterAttempt: Int(saga.compensations[index].attempts))
                let next = Timestamp.now.secondsSince1970 + Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
                saga.compensations[index].nextAttemptTime = Timestamp(secondsSince1970: next)
                nextAttempt = min(nextAttempt ?? next, next)
                logger.info("compensation failed, will retry", metadata: ["saga": "\(saga.sagaId)", "kind": "\(kind)", "error": "\(rpcError)"])
            }
        }
        if nextAttempt == nil { saga.state = .compensated }
        saga.updateTime = .now
        try await store.save(saga, nextAttempt: nextAttempt, holder: replicaID)
        return saga
    }

    /// One compensating call. Returns false when there was nothing to undo.
    func perform(_ kind: SupervisorV1.CompensationKind, _ saga: SupervisorV1.FailedSaga) async throws -> Bool {
        let options = CallOptions.idempotent()
        do {
            switch kind {
            case .releaseDrone:
                var request = DroneSchedulerV1.ReleaseDroneRequest()
                request.deliveryId = saga.deliveryId
                request.reason = "saga \(saga.sagaId) failed"
                return try await targets.scheduler.releaseDrone(request, options: options).released
            case .abortFlight:
                var request = TelemetryV1.AbortFlightRequest()
                request.deliveryId = saga.deliveryId
                request.reason = "saga \(saga.sagaId) failed"
                return try await targets.flightControl.abortFlight(request, options: options).aborted
            case .deletePackage:
                var request = PackageV1.DeletePackageRequest()
                request.packageId = saga.packageId
                request.deliveryId = saga.deliveryId
                // Only the saga owner's package: an id that is another business's is not ours to undo.
                request.ownerId = saga.owner?.accountId ?? ""
                if saga.packageId.isEmpty { return false }
                _ = try await targets.packages.deletePackage(request, options: options)
                return true
            case .markDeliveryFailed:
                var request = DeliveryV1.MarkDeliveryFailedRequest()
                request.deliveryId = saga.deliveryId
                request.sagaId = saga.sagaId
                // A delivery Delivery never heard of is recorded for its owner with the create
                // request's locations (a Delivery has both). Without them (no create request kept
                // with the saga) only a delivery Delivery has is marked: NOT_FOUND, nothing to undo.
                if let envelope = try? IngestionV1.RequestEnvelope(serializedBytes: saga.requestEnvelope), case .create(let create)? = envelope.payload,
                   let pickup = create.pickupLocation, let dropoff = create.dropoffLocation {
                    request.owner = saga.owner ?? create.owner
                    request.pickupLocation = pickup
                    request.dropoffLocation = dropoff
                }
                request.reason = "the delivery could not be scheduled: \(saga.error?.message ?? "saga failed")"
                do {
                    _ = try await targets.delivery.markDeliveryFailed(request, options: options)
                } catch let error as RPCError where error.code == .failedPrecondition {
                    return false  // it already ended otherwise (completed or cancelled)
                }
                return true
            case .reportFailedChange:
                var request = DeliveryV1.RecordFailedChangeRequest()
                request.deliveryId = saga.deliveryId
                var change = DeliveryV1.FailedChange()
                change.operation = saga.operation
                change.reason = saga.error?.message ?? "the change could not be made"
                change.operationId = (try? IngestionV1.RequestEnvelope(serializedBytes: saga.requestEnvelope))?.messageId ?? saga.sagaId
                request.change = change
                _ = try await targets.delivery.recordFailedChange(request, options: options)
                return true
            default:
                return false
            }
        } catch let error as RPCError where error.code == .notFound {
            return false
        }
    }

    func existing(_ id: String) async throws -> SupervisorV1.FailedSaga {
        guard let saga = try await store.saga(id: id) else { throw RPCError(.notFound, "no failed saga \(id)") }
        return saga
    }
}

/// One sleeper that another task can wake early. A wake with nobody asleep is kept for the next
/// `wait`, so a wake between two waits is not lost. One task waits at a time (the loop).
final class Wakeup: Sendable {
    private struct State {
        var sleeper: CheckedContinuation<Void, Never>?
        var pending = false
    }
    private let state = Mutex(State())

    func wake() {
        let sleeper = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let sleeper = state.sleeper else {
                state.pending = true
                return nil
            }
            state.sleeper = nil
            return sleeper
        }
        sleeper?.resume()
    }

    /// Returns after `interval`, or sooner when woken or when the waiting task is cancelled.
    func wait(atMost interval: Duration) async {
        let timer = Task {
            try? await Task.sleep(for: interval)
            if !Task.isCancelled { self.wake() }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    precondition(state.sleeper == nil, "Wakeup has one waiter at a time")
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.sleeper = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            wake()
        }
        timer.cancel()
    }
}
