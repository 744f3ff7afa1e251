import DroneDeliveryAPI
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit

/// Delivery: the deliveries in flight. Turns drone positions into stages, tracking events and
/// both ETAs; accepts reschedule, cancel, failure and confirmation; streams status updates; and
/// publishes domain events (through its outbox) for Delivery History and Drone Scheduler.
public final class DeliveryServiceLogic: DeliveryV1.DeliveryService.Handler {
    /// The topic Delivery publishes its domain events to.
    public static let eventTopic = "delivery-events"
    /// Speed assumed for ETAs before the drone has reported one (m/s).
    public static let defaultSpeed = 15.0

    let store: any DeliveryStore
    let flightControl: TelemetryV1.FlightControlService.Client
    /// Where committed tracking events are announced to the TrackDelivery streams of every replica
    /// (in-process on the embedded engine, core NATS on the scaled one).
    let liveFeed: any LiveFeed
    /// A tracking stream that heard no new event for this long reads the store again, so an
    /// event whose announcement was lost (its replica died between commit and announcement, the
    /// feed was away, or its writer is another process on the embedded engine) still arrives.
    let trackingReread: Duration
    let logger: Logger
    /// Between attempts at aborting a flight that flight control did not take.
    let abortBackoff = JitteredBackoff(initial: .milliseconds(500), maximum: .seconds(10))

    /// The live feed topic of tracking events; the key is the delivery id, the payload a
    /// serialized `DeliveryTrackingEvent` with its sequence.
    public static let trackingTopic = "delivery-tracking"

    public init(store: any DeliveryStore, flightControl: RPCClient, liveFeed: any LiveFeed = InProcessLiveFeed(),
                trackingReread: Duration = .seconds(2), logger: Logger = Logger(label: "fabrikam.delivery")) {
        self.store = store
        self.flightControl = TelemetryV1.FlightControlService.Client(flightControl)
        self.liveFeed = liveFeed
        self.trackingReread = trackingReread
        self.logger = logger
    }

    static func isFinal(_ stage: CommonV1.DeliveryStage) -> Bool { [.completed, .cancelled, .failed].contains(stage) }

    // MARK: Scheduling and reading

    public func scheduleDelivery(_ request: DeliveryV1.ScheduleDeliveryRequest, context: ServerContext) async throws -> DeliveryV1.ScheduleDeliveryResponse {
        guard let input = request.delivery else { throw RPCError(.invalidArgument, "delivery is required") }
        // Field rules (delivery.proto): delivery_id, both locations on Earth. The owner's account
        // id is checked here: Owner is shared with requests where it may be empty, so a rule on
        // its field would apply there too. So is drone_id (Drone Scheduler assigns it first): a
        // Delivery that failed or was cancelled before it was scheduled has none, so it is not a
        // field rule of Delivery.
        for (field, value) in [("delivery.owner.account_id", input.owner?.accountId ?? ""), ("delivery.drone_id", input.droneId)] where value.isEmpty {
            var error = RPCError(.invalidArgument, "\(field) is required")
            try? error.addFieldViolation(field, "value is required")
            throw error
        }
        let now = Timestamp.now
        let result = try await store.update(id: input.deliveryId, operationID: nil, trace: RequestTrace.current) { current in
            if let current, current.status.stage == .cancelled {
                // Cancelled while its saga was still on the way (it waited for a drone, say): the
                // saga fails and gives back what it holds.
                throw RPCError(.failedPrecondition, "delivery \(input.deliveryId) was cancelled (\(current.delivery.endReason)); it is not scheduled")
            }
            if let current, current.status.stage != .failed {
                // Create-or-replace: a repeated schedule (a redelivered saga step) changes nothing.
                return nil
            }
            var delivery = input
            delivery.stage = .created
            delivery.createTime = current?.delivery.createTime ?? now
            delivery.updateTime = now
            delivery.endReason = ""
            var status = DeliveryV1.DeliveryStatus()
            status.stage = .created
            status.droneId = delivery.droneId
            status.updateTime = now
            var record = DeliveryRecord(delivery: delivery, status: status)
            record.lastSequence = current?.lastSequence ?? 0
            record.revision = (current?.revision ?? -1) + 1
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: now, location: delivery.pickupLocation)]
            change.domainEvents = [(0, current == nil ? "scheduled" : "scheduled again after a failed attempt")]
            return change
        }
        guard var record = result.record else { throw RPCError(.internal, "delivery \(input.deliveryId) was not stored") }
        await announce(result.tracking)
        let created = !result.tracking.isEmpty
        if !Self.isFinal(record.status.stage) {
            record = try await dispatchFlight(record)
        }
        var response = DeliveryV1.ScheduleDeliveryResponse()
        response.delivery = record.delivery
        response.created = created
        response.status = record.status
        return response
    }

    /// Sends the flight plan to flight control (idempotent per delivery and revision) and keeps
    /// its first ETAs. Fails with UNAVAILABLE when flight control cannot be reached, so the
    /// caller's saga retries (the delivery itself is already stored).
    func dispatchFlight(_ record: DeliveryRecord) async throws -> DeliveryRecord {
        var plan = TelemetryV1.FlightPlan()
        plan.flightId = Self.flightID(record)
        plan.droneId = record.delivery.droneId
        plan.deliveryId = record.delivery.deliveryId
        // A package already on board is "picked up" where the drone is now.
        plan.pickupLocation = record.pickedUp ? (record.status.lastKnownLocation ?? record.delivery.pickupLocation) : record.delivery.pickupLocation
        plan.dropoffLocation = record.delivery.dropoffLocation
        plan.pickupTime = record.delivery.pickupTime
        plan.deadline = record.delivery.deadline
        plan.reportInterval = Google.Protobuf.Duration(seconds: 1)
        var request = TelemetryV1.AssignFlightRequest()
        request.plan = plan
        request.traceContext = RequestTrace.current
        let answer: TelemetryV1.AssignFlightResponse
        do {
            answer = try await flightControl.assignFlight(request, options: .idempotent())
        } catch let error as RPCError {
            throw RPCError(error.code.isTransient ? .unavailable : error.code, "flight control did not accept the flight: \(error.message)")
        }
        let updated = try await store.update(id: record.delivery.deliveryId, operationID: nil, trace: nil) { current in
            guard var current, !Self.isFinal(current.status.stage), current.status.pickupEta == nil || answer.created else { return nil }
            current.status.pickupEta = answer.pickupEta
            current.status.deliveryEta = answer.dropoffEta
            return DeliveryChange(record: current)
        }
        return updated.record ?? record
    }

    public func getDelivery(_ request: DeliveryV1.GetDeliveryRequest, context: ServerContext) async throws -> DeliveryV1.Delivery {
        try await existing(request.deliveryId).delivery
    }

    public func getDeliveryStatus(_ request: DeliveryV1.GetDeliveryStatusRequest, context: ServerContext) async throws -> DeliveryV1.GetDeliveryStatusResponse {
        var response = DeliveryV1.GetDeliveryStatusResponse()
        response.deliveryId = request.deliveryId
        response.status = try await existing(request.deliveryId).status
        return response
    }

    public func listDeliveries(_ request: DeliveryV1.ListDeliveriesRequest, context: ServerContext) async throws -> DeliveryV1.ListDeliveriesResponse {
        let page = try Page(token: request.pageToken, size: request.pageSize)
        let deliveries = try await store.list(ownerID: request.ownerId, userID: request.userId, stages: request.stages, offset: page.offset,
                                              limit: page.fetchLimit)
        var response = DeliveryV1.ListDeliveriesResponse()
        (response.deliveries, response.nextPageToken) = page.cut(deliveries)
        return response
    }

    /// Streams the delivery's tracking events after `after_sequence`, ending with its final stage.
    /// Any replica serves any stream: events come from the shared store, and announcements (from
    /// whichever replica committed them) only say when to look. Order: follow the live feed first,
    /// then replay the store, then live events, skipping what was written already; an event
    /// further on than the next one (announcements lost or out of order) and a quiet spell of
    /// `trackingReread` both read the store from the last event written.
    public func trackDelivery(_ request: DeliveryV1.TrackDeliveryRequest, writer: ResponseWriter<DeliveryV1.DeliveryTrackingEvent>, context: ServerContext) async throws {
        let deliveryID = request.deliveryId
        _ = try await existing(deliveryID)
        // Follow first, then read what is stored: whatever is committed after the read is announced
        // to this follower. Without the feed (NATS away) the stream still works from store re-reads.
        let follower: LiveFollower?
        do {
            follower = try await liveFeed.follow(topic: Self.trackingTopic, key: deliveryID)
        } catch {
            logger.warning("live feed unavailable; tracking from the store only", metadata: ["delivery": "\(deliveryID)", "error": "\(error)"])
            follower = nil
        }
        defer { follower?.stop() }
        var last = request.afterSequence
        /// Writes what the store holds after `last`; true once the final event is written.
        func catchUp() async throws -> Bool {
            for event in try await store.trackingEvents(deliveryID: deliveryID, after: last) {
                try await writer.write(event)
                last = event.sequence
                if Self.isFinal(event.stage) { return true }
            }
            return false
        }
        if try await catchUp() { return }
        if let record = try await store.record(id: deliveryID), Self.isFinal(record.status.stage), record.lastSequence <= last { return }

        // Announcements and re-read ticks, in one sequence this loop reads.
        enum Signal: Sendable { case announcement([UInt8]), tick }
        let (signals, signal) = AsyncStream<Signal>.makeStream(bufferingPolicy: .bufferingNewest(LiveFollower.bufferLimit))
        let forwarding = Task {
            guard let follower else { return }
            for await payload in follower { signal.yield(.announcement(payload)) }
        }
        let ticking = Task { [trackingReread] in
            while !Task.isCancelled {
                try? await Task.sleep(for: trackingReread)
                signal.yield(.tick)
            }
        }
        defer {
            forwarding.cancel()
            ticking.cancel()
            signal.finish()
        }
        var heardSinceTick = false
        for await next in signals {
            switch next {
            case .announcement(let payload):
                guard let event = try? DeliveryV1.DeliveryTrackingEvent(serializedBytes: payload), event.deliveryId == deliveryID,
                      event.sequence > last else { continue }
                heardSinceTick = true
                if event.sequence == last + 1 {
                    try await writer.write(event)
                    last = event.sequence
                    if Self.isFinal(event.stage) { return }
                } else if try await catchUp() {
                    // A gap: the events in between were committed before this one was announced.
                    return
                }
            case .tick:
                if heardSinceTick {
                    heardSinceTick = false
                } else if try await catchUp() {
                    return
                }
            }
        }
        try Task.checkCancellation()
    }

    /// Tells the delivery's tracking streams, on every replica, about committed events. Best
    /// effort: a stream that misses one finds it in the store (gap or quiet spell).
    func announce(_ events: [DeliveryV1.DeliveryTrackingEvent]) async {
        for event in events {
            do {
                try await liveFeed.announce(event.serializedBytes(), topic: Self.trackingTopic, key: event.deliveryId)
            } catch {
                logger.debug("tracking event not announced", metadata: ["delivery": "\(event.deliveryId)", "sequence": "\(event.sequence)", "error": "\(error)"])
            }
        }
    }

    // MARK: Changes requested by Workflow and Supervisor

    public func rescheduleDelivery(_ request: DeliveryV1.RescheduleDeliveryRequest, context: ServerContext) async throws -> DeliveryV1.Delivery {
        let now = Timestamp.now
        let result = try await store.update(id: request.deliveryId, operationID: request.operationId, trace: RequestTrace.current) { current in
            guard var record = current else { throw RPCError(.notFound, "delivery \(request.deliveryId) does not exist") }
            guard !Self.isFinal(record.status.stage) else {
                throw RPCError(.failedPrecondition, "delivery \(request.deliveryId) is \(record.status.stage) and can no longer be rescheduled")
            }
            guard !record.pickedUp || request.pickupLocation == nil else {
                throw RPCError(.failedPrecondition, "the package of delivery \(request.deliveryId) is already picked up; the pickup location cannot change")
            }
            if let pickup = request.pickupLocation { record.delivery.pickupLocation = pickup }
            if let dropoff = request.dropoffLocation { record.delivery.dropoffLocation = dropoff }
            if let time = request.pickupTime { record.delivery.pickupTime = time }
            if let deadline = request.deadline { record.delivery.deadline = deadline }
            if let expedited = request.expedited { record.delivery.expedited = expedited.value }
            record.delivery.updateTime = now
            record.status.stage = .rescheduled
            record.status.updateTime = now
            record.status.pickupEta = nil
            record.status.failedChange = nil
            record.arrived = false
            record.revision += 1
            record.positionSequence = 0  // the new flight numbers its reports from 1
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: now, location: record.status.lastKnownLocation)]
            change.domainEvents = [(0, "rescheduled")]
            return change
        }
        await announce(result.tracking)
        guard let record = result.record else { throw RPCError(.notFound, "delivery \(request.deliveryId) does not exist") }
        if !Self.isFinal(record.status.stage) { return try await dispatchFlight(record).delivery }
        return record.delivery
    }

    /// Cancels the delivery. Its flight is aborted now, or, while flight control cannot be
    /// reached, later by `abortFlights` (the abort is stored with the cancel): the cancel itself
    /// never waits on the drone.
    public func cancelDelivery(_ request: DeliveryV1.CancelDeliveryRequest, context: ServerContext) async throws -> DeliveryV1.Delivery {
        let unscheduled = request.owner.map {
            UnscheduledDelivery(owner: $0, pickupLocation: request.pickupLocation, dropoffLocation: request.dropoffLocation)
        }
        let record = try await end(request.deliveryId, stage: .cancelled, reason: request.reason.isEmpty ? "cancelled by the owner" : request.reason,
                                   operationID: request.operationId, recordingIfUnknown: unscheduled)
        await abortFlight(request.deliveryId)
        return record.delivery
    }

    public func markDeliveryFailed(_ request: DeliveryV1.MarkDeliveryFailedRequest, context: ServerContext) async throws -> DeliveryV1.Delivery {
        let unscheduled = request.owner.map {
            UnscheduledDelivery(owner: $0, pickupLocation: request.pickupLocation, dropoffLocation: request.dropoffLocation)
        }
        let record = try await end(request.deliveryId, stage: .failed, reason: request.reason.isEmpty ? "the delivery could not be carried out" : request.reason,
                                   operationID: request.sagaId.isEmpty ? nil : "fail:\(request.sagaId)", recordingIfUnknown: unscheduled)
        await abortFlight(request.deliveryId)
        return record.delivery
    }

    public func recordFailedChange(_ request: DeliveryV1.RecordFailedChangeRequest, context: ServerContext) async throws -> DeliveryV1.DeliveryStatus {
        guard var change = request.change else { throw RPCError(.invalidArgument, "change is required") }
        // delivery_id is required and change.operation is RESCHEDULE or CANCEL (field rules).
        change.time = .now
        let failed = change
        let result = try await store.update(id: request.deliveryId, operationID: change.operationId.isEmpty ? nil : "failed-change:\(change.operationId)",
                                            trace: RequestTrace.current) { current in
            guard var record = current else { throw RPCError(.notFound, "delivery \(request.deliveryId) does not exist") }
            record.status.failedChange = failed
            return DeliveryChange(record: record)
        }
        guard let record = result.record else { throw RPCError(.notFound, "delivery \(request.deliveryId) does not exist") }
        return record.status
    }

    /// Moves a delivery to a final stage (once; repeating it returns the same delivery). With
    /// `unscheduled`, a delivery Delivery never heard of is recorded as it describes first.
    func end(_ deliveryID: String, stage: CommonV1.DeliveryStage, reason: String, operationID: String?,
             recordingIfUnknown unscheduled: UnscheduledDelivery?) async throws -> DeliveryRecord {
        let now = Timestamp.now
        let result = try await store.update(id: deliveryID, operationID: operationID, trace: RequestTrace.current) { current in
            var record: DeliveryRecord
            if let current {
                record = current
            } else if let unscheduled {
                // Its saga failed or was cancelled before Delivery heard of it: keep a record, with
                // its owner and locations, so the customer sees Failed or Cancelled rather than
                // "not found".
                record = DeliveryRecord(delivery: try unscheduled.delivery(id: deliveryID, at: now), status: DeliveryV1.DeliveryStatus())
            } else {
                throw RPCError(.notFound, "delivery \(deliveryID) does not exist")
            }
            if record.status.stage == stage { return nil }
            if Self.isFinal(record.status.stage) {
                throw RPCError(.failedPrecondition, "delivery \(deliveryID) is already \(record.status.stage)")
            }
            record.status.stage = stage
            record.status.updateTime = now
            if stage == .cancelled { record.status.failedChange = nil }
            record.delivery.updateTime = now
            record.delivery.endReason = reason
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: now, location: record.status.lastKnownLocation)]
            change.domainEvents = [(0, reason)]
            change.flightToAbort = reason
            return change
        }
        await announce(result.tracking)
        guard let record = result.record else { throw RPCError(.notFound, "delivery \(deliveryID) does not exist") }
        return record
    }

    /// Tries a stored flight abort now (best effort: `abortFlights` retries what fails).
    func abortFlight(_ deliveryID: String) async {
        guard let pending = try? await store.flightAbort(deliveryID: deliveryID) else { return }
        await tryAbort(deliveryID, reason: pending.reason, attempts: pending.attempts)
    }

    /// One attempt at aborting a stored flight abort: forgotten once flight control has it.
    func tryAbort(_ deliveryID: String, reason: String, attempts: Int) async {
        var request = TelemetryV1.AbortFlightRequest()
        request.deliveryId = deliveryID
        request.reason = reason
        do {
            _ = try await flightControl.abortFlight(request, options: .idempotent())
            try await store.finishFlightAbort(deliveryID: deliveryID)
        } catch {
            let delay = abortBackoff.delay(afterAttempt: attempts + 1)
            let next = Timestamp.now.secondsSince1970 + Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
            try? await store.postponeFlightAbort(deliveryID: deliveryID, next: next)
            logger.info("flight not aborted yet; will retry", metadata: ["delivery": "\(deliveryID)", "error": "\(error)"])
        }
    }

    /// Aborts the flights of ended deliveries that flight control could not be told about when
    /// they ended (it was down, say), retrying with backoff, until cancelled. A cancel while the
    /// simulator is down thus still stops the drone in the end.
    public func abortFlights(every interval: Duration = .milliseconds(500)) async {
        while !Task.isCancelled {
            do {
                for pending in try await store.flightAborts(dueAt: Timestamp.now.secondsSince1970, limit: 64) {
                    await tryAbort(pending.deliveryID, reason: pending.reason, attempts: pending.attempts)
                }
            } catch {
                logger.warning("flight abort round failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Notices flights that stopped reporting: a delivery in flight that has not heard from its
    /// drone for `silence` moves to FAILED (its tracking streams end there), its flight is to be
    /// aborted, and its FAILED event says the drone is lost, so Drone Scheduler takes the drone
    /// out of service until it registers again. Silence counts from this process's start at
    /// the earliest: a Delivery that was down did not hear anything either. Runs until cancelled.
    public func watchFlights(silence: Duration, every interval: Duration) async {
        let started = Timestamp.now.secondsSince1970
        let seconds = Double(silence.components.seconds) + Double(silence.components.attoseconds) / 1e18
        while !Task.isCancelled {
            let now = Timestamp.now.secondsSince1970
            if now - started >= seconds {
                do {
                    for deliveryID in try await store.silentFlights(before: now - seconds, limit: 64) {
                        try await declareLost(deliveryID, silentSince: now - seconds, silence: seconds)
                    }
                } catch {
                    logger.warning("flight watch round failed", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    func declareLost(_ deliveryID: String, silentSince cutoff: Double, silence: Double) async throws {
        let now = Timestamp.now
        let reason = "the drone stopped reporting: nothing heard for \(Int(silence)) s; the flight is lost"
        let result = try await store.update(id: deliveryID, operationID: nil, trace: nil) { current in
            // Looked at again inside the transaction: a position may have just arrived.
            guard var record = current, !Self.isFinal(record.status.stage), !record.arrived,
                  (record.status.updateTime?.secondsSince1970 ?? 0) < cutoff else { return nil }
            record.status.stage = .failed
            record.status.updateTime = now
            record.delivery.updateTime = now
            record.delivery.endReason = reason
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: now, location: record.status.lastKnownLocation)]
            change.domainEvents = [(0, reason)]
            change.flightToAbort = reason
            change.droneLost = true
            return change
        }
        guard !result.tracking.isEmpty else { return }
        logger.warning("flight lost", metadata: ["delivery": "\(deliveryID)", "drone": "\(result.record?.delivery.droneId ?? "")"])
        await announce(result.tracking)
        await abortFlight(deliveryID)
    }

    public func confirmDelivery(_ request: DeliveryV1.ConfirmDeliveryRequest, context: ServerContext) async throws -> DeliveryV1.Delivery {
        guard let confirmation = request.confirmation else { throw RPCError(.invalidArgument, "confirmation is required") }
        let now = Timestamp.now
        let result = try await store.update(id: request.deliveryId, operationID: nil, trace: RequestTrace.current) { current in
            guard var record = current else { throw RPCError(.notFound, "delivery \(request.deliveryId) does not exist") }
            if record.status.stage == .completed, record.delivery.confirmation != nil { return nil }
            guard record.arrived, !Self.isFinal(record.status.stage) else {
                throw RPCError(.failedPrecondition, "delivery \(request.deliveryId) is \(record.status.stage); confirm it once the drone is at the drop-off")
            }
            let required = record.delivery.confirmationRequired
            if required != .unspecified, required != .none, confirmation.confirmationType != required {
                throw RPCError(.invalidArgument, "confirmation.confirmation_type must be \(required), got \(confirmation.confirmationType)")
            }
            var stored = confirmation
            if stored.time == nil { stored.time = now }
            record.delivery.confirmation = stored
            record.status.stage = .completed
            record.status.updateTime = now
            record.delivery.updateTime = now
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: now, location: record.status.lastKnownLocation)]
            change.domainEvents = [(0, "confirmed by the recipient")]
            return change
        }
        await announce(result.tracking)
        return result.record!.delivery
    }

    public func notifyMe(_ request: DeliveryV1.NotifyMeRequest, context: ServerContext) async throws -> DeliveryV1.NotifyMeResponse {
        // email_address is an e-mail address when set (a field rule). At least one of the two
        // is set: protovalidate's message oneof means exactly one, so this stays here.
        guard !request.emailAddress.isEmpty || !request.sms.isEmpty else {
            var error = RPCError(.invalidArgument, "email_address or sms is required")
            try? error.addFieldViolation("", "one of email_address, sms must be set")
            throw error
        }
        _ = try await existing(request.deliveryId)
        var response = DeliveryV1.NotifyMeResponse()
        response.deliveryId = request.deliveryId
        response.notificationId = makeID("ntf")
        try await store.addNotification(id: response.notificationId, deliveryID: request.deliveryId, email: request.emailAddress, sms: request.sms)
        return response
    }

    // MARK: Telemetry

    public func reportDronePositions(_ requests: RequestStream<DeliveryV1.ReportDronePositionsRequest>, context: ServerContext) async throws -> DeliveryV1.ReportDronePositionsResponse {
        var response = DeliveryV1.ReportDronePositionsResponse()
        for try await request in requests {
            for position in request.positions {
                let events = try await apply(position)
                if let events {
                    response.acceptedCount += 1
                    response.trackingEventCount += Int64(events)
                } else {
                    response.ignoredCount += 1
                }
            }
        }
        return response
    }

    /// Applies one drone position to its delivery: a tracking event, the stage it implies, and
    /// fresh ETAs. Nil when the position is not for a delivery in flight with that drone.
    func apply(_ position: TelemetryV1.DronePosition) async throws -> Int? {
        // A position off the Earth (Location's field rules) is counted as ignored, not refused:
        // the positions fields of the reports are `ignore = IGNORE_ALWAYS`.
        guard !position.deliveryId.isEmpty, let location = position.location, location.validationViolations().isEmpty else { return nil }
        let time = position.time ?? .now
        let result = try await store.update(id: position.deliveryId, operationID: nil, trace: RequestTrace.current) { current in
            guard var record = current, !Self.isFinal(record.status.stage), record.delivery.droneId == position.droneId else { return nil }
            // Not this flight's (an earlier flight's, from before a reschedule), or not newer than
            // the last report taken (a simulator replica that saved, then stalled before
            // reporting, while another took its drones over): ignored.
            if !position.flightId.isEmpty && position.flightId != Self.flightID(record) { return nil }
            if position.sequence > 0 {
                guard position.sequence > record.positionSequence else { return nil }
                record.positionSequence = position.sequence
            }
            let before = record.status.stage
            switch position.phase {
            case .headedToPickup: record.status.stage = record.pickedUp ? .headedToDropoff : .headedToPickup
            case .atPickup, .headedToDropoff:
                record.pickedUp = true
                record.status.stage = .headedToDropoff
            case .atDropoff:
                record.pickedUp = true
                record.arrived = true
                let required = record.delivery.confirmationRequired
                record.status.stage = (required == .unspecified || required == .none) ? .completed : .headedToDropoff
            default: break
            }
            if record.status.stage == .rescheduled || record.status.stage == .created { return nil }
            record.status.lastKnownLocation = location
            record.status.updateTime = time
            Self.updateETAs(&record, position: location, time: time, speed: position.groundSpeedMps > 0 ? position.groundSpeedMps : Self.defaultSpeed)
            var change = DeliveryChange(record: record)
            change.tracking = [Self.trackingEvent(record, at: time, location: location)]
            if record.status.stage != before {
                let reason = switch record.status.stage {
                case .headedToPickup: "drone \(position.droneId) is on its way to the pickup"
                case .headedToDropoff: "package picked up; on its way to the drop-off"
                case .completed: "dropped off"
                default: "drone position"
                }
                change.domainEvents = [(0, reason)]
            }
            return change
        }
        await announce(result.tracking)
        return result.tracking.isEmpty ? nil : result.tracking.count
    }

    /// The id of the delivery's current flight: one per revision (a reschedule is a new flight).
    static func flightID(_ record: DeliveryRecord) -> String { "\(record.delivery.deliveryId)-r\(record.revision)" }

    /// Both ETAs from where the drone is and how fast it flies: to the pickup (while headed
    /// there), then pickup to drop-off.
    static func updateETAs(_ record: inout DeliveryRecord, position: CommonV1.Location, time: Timestamp, speed: Double) {
        guard let pickup = record.delivery.pickupLocation, let dropoff = record.delivery.dropoffLocation else { return }
        let now = time.secondsSince1970
        switch record.status.stage {
        case .headedToPickup:
            let pickupETA = now + position.distance(to: pickup) / speed
            record.status.pickupEta = Timestamp(secondsSince1970: pickupETA)
            record.status.deliveryEta = Timestamp(secondsSince1970: pickupETA + pickup.distance(to: dropoff) / speed)
        case .headedToDropoff:
            if record.status.pickupEta == nil || record.status.pickupEta!.secondsSince1970 > now { record.status.pickupEta = time }
            record.status.deliveryEta = Timestamp(secondsSince1970: now + position.distance(to: dropoff) / speed)
        case .completed:
            record.status.deliveryEta = time
        default: break
        }
    }

    static func trackingEvent(_ record: DeliveryRecord, at time: Timestamp, location: CommonV1.Location?) -> DeliveryV1.DeliveryTrackingEvent {
        var event = DeliveryV1.DeliveryTrackingEvent()
        event.deliveryId = record.delivery.deliveryId
        event.stage = record.status.stage
        event.location = location
        event.time = time
        event.pickupEta = record.status.pickupEta
        event.deliveryEta = record.status.deliveryEta
        event.droneId = record.delivery.droneId
        return event
    }

    // MARK: Outbox relay

    /// Publishes committed domain events to the broker, oldest first, until cancelled. The
    /// broker de-duplicates on the event id, so a crash between publish and delete repeats nothing.
    public func relayEvents(to stream: any EventStream) async {
        while !Task.isCancelled {
            do {
                let pending = try await store.outbox(limit: 256)
                for (id, event) in pending {
                    var headers: [String: String] = [MessageHeader.contentType: "application/x-protobuf; type=\(DeliveryV1.DeliveryEvent.protoMessageName)"]
                    guard let trace = event.traceContext else {
                        _ = try await stream.publish(OutgoingMessage(id: id, key: event.deliveryId, headers: headers, payload: event.serializedBytes()), to: Self.eventTopic)
                        continue
                    }
                    // With tracing on, a PRODUCER span under the change that made the event, and the
                    // message carries the span's context (off: the change's trace, as before).
                    try await Tracing.withSpan("send \(Self.eventTopic)", kind: .producer, parent: trace,
                                               attributes: [SpanAttribute("messaging.system", "fabrikam"), SpanAttribute("messaging.operation.type", "send"),
                                                            SpanAttribute("messaging.destination.name", Self.eventTopic), SpanAttribute("messaging.message.id", id),
                                                            SpanAttribute("fabrikam.delivery.id", event.deliveryId)]) {
                        headers.merge(RequestTrace.headers(RequestTrace.current ?? trace)) { $1 }
                        _ = try await stream.publish(OutgoingMessage(id: id, key: event.deliveryId, headers: headers, payload: event.serializedBytes()), to: Self.eventTopic)
                    }
                }
                if !pending.isEmpty { try await store.removeFromOutbox(ids: pending.map(\.id)) }
                if pending.count < 256 { try await Task.sleep(for: .milliseconds(50)) }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("event relay failed; will retry", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func existing(_ deliveryID: String) async throws -> DeliveryRecord {
        guard let record = try await store.record(id: deliveryID) else { throw RPCError(.notFound, "delivery \(deliveryID) does not exist") }
        return record
    }
}
