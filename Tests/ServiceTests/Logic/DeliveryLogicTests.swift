@testable import Delivery
import DeliveryHistory
import DroneDeliveryAPI
import DroneSimulator
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Testing
import TestSupport

/// Delivery's logic in process, against a real simulator (FlightControl) on a real socket.
@Suite("Delivery and Delivery History logic in process", .serialized)
struct DeliveryLogicTests {
    let pickup = CommonV1.Location(latitude: 47.6101, longitude: -122.3421)
    let dropoff = CommonV1.Location(latitude: 47.6205, longitude: -122.3493)

    /// A delivery service with its own store and a simulator with one drone, both real.
    func withDelivery(_ body: (DeliveryServiceLogic, any DeliveryStore) async throws -> Void) async throws {
        let folder = try makeTemporaryDirectory("delivery-logic")
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)  // the simulator never reports here
        let simulator = DroneSimulator(store: try SQLiteFlightStore(path: folder.appendingPathComponent("sim.sqlite").path), delivery: unreachable)
        _ = try await simulator.createFleet(count: 1, base: pickup)
        var router = Router()
        simulator.register(in: &router)
        let server = RPCServer(router: router)
        let port = try await server.start()
        let flightControl = RPCClient(host: "127.0.0.1", port: port)
        let store = try SQLiteDeliveryStore(path: folder.appendingPathComponent("delivery.sqlite").path)
        let logic = DeliveryServiceLogic(store: store, flightControl: flightControl)
        do { try await body(logic, store) } catch {
            await flightControl.close(); await unreachable.close(); await server.shutdown()
            throw error
        }
        await flightControl.close(); await unreachable.close(); await server.shutdown()
    }

    /// Delivery d1 of account acct from `pickup` to `dropoff` with drone-001 (the one drone of
    /// the simulated fleet these tests start).
    static func scheduleRequest(from pickup: CommonV1.Location, to dropoff: CommonV1.Location,
                                confirmation: CommonV1.ConfirmationType = .none) -> DeliveryV1.ScheduleDeliveryRequest {
        var delivery = DeliveryV1.Delivery()
        delivery.deliveryId = "d1"
        var owner = CommonV1.Owner()
        owner.accountId = "acct"
        delivery.owner = owner
        delivery.pickupLocation = pickup
        delivery.dropoffLocation = dropoff
        delivery.droneId = "drone-001"
        delivery.confirmationRequired = confirmation
        var request = DeliveryV1.ScheduleDeliveryRequest()
        request.delivery = delivery
        return request
    }

    func schedule(_ logic: DeliveryServiceLogic, confirmation: CommonV1.ConfirmationType = .none) async throws -> DeliveryV1.ScheduleDeliveryResponse {
        try await logic.scheduleDelivery(Self.scheduleRequest(from: pickup, to: dropoff, confirmation: confirmation), context: .inProcess())
    }

    func position(_ phase: TelemetryV1.FlightPhase, at location: CommonV1.Location, drone: String = "drone-001") -> TelemetryV1.DronePosition {
        Self.position(phase, at: location, drone: drone)
    }

    /// A position report of delivery d1 (20 m/s, now).
    static func position(_ phase: TelemetryV1.FlightPhase, at location: CommonV1.Location, drone: String = "drone-001") -> TelemetryV1.DronePosition {
        var position = TelemetryV1.DronePosition()
        position.droneId = drone
        position.deliveryId = "d1"
        position.location = location
        position.phase = phase
        position.groundSpeedMps = 20
        position.time = .now
        return position
    }

    @Test("stages and both ETAs follow the drone's positions; the flight is dispatched; other drones and late positions are ignored")
    func stagesFromPositions() async throws {
        try await withDelivery { logic, store in
            let scheduled = try await schedule(logic)
            #expect(scheduled.created && scheduled.status?.stage == .created)
            #expect(scheduled.status?.pickupEta != nil, "ETAs from the accepted flight plan")
            #expect(try await schedule(logic).created == false, "scheduling again changes nothing")

            let halfway = pickup.interpolated(to: dropoff, fraction: 0.5)
            #expect(try await logic.apply(position(.headedToPickup, at: pickup, drone: "drone-999")) == nil, "another drone's position")
            #expect(try await logic.apply(position(.headedToPickup, at: CommonV1.Location(latitude: 47.60, longitude: -122.34))) == 1)
            var status = try #require(try await store.record(id: "d1")).status
            #expect(status.stage == .headedToPickup)
            let toPickup = CommonV1.Location(latitude: 47.60, longitude: -122.34).distance(to: pickup) / 20
            let pickupETA = try #require(status.pickupEta).secondsSince1970 - Date().timeIntervalSince1970
            #expect(abs(pickupETA - toPickup) < 2, "pickup ETA is distance over speed")
            let deliveryETA = try #require(status.deliveryEta).secondsSince1970 - Date().timeIntervalSince1970
            #expect(abs(deliveryETA - toPickup - pickup.distance(to: dropoff) / 20) < 2)

            _ = try await logic.apply(position(.headedToDropoff, at: halfway))
            status = try #require(try await store.record(id: "d1")).status
            #expect(status.stage == .headedToDropoff)
            let remaining = try #require(status.deliveryEta).secondsSince1970 - Date().timeIntervalSince1970
            #expect(abs(remaining - halfway.distance(to: dropoff) / 20) < 2)

            _ = try await logic.apply(position(.atDropoff, at: dropoff))
            #expect(try await store.record(id: "d1")?.status.stage == .completed)
            #expect(try await logic.apply(position(.headedToDropoff, at: halfway)) == nil, "positions after the end are ignored")

            let events = try await store.outbox(limit: 100).map(\.event.stage)
            #expect(events == [.created, .headedToPickup, .headedToDropoff, .completed])
            let tracking = try await store.trackingEvents(deliveryID: "d1", after: 0)
            #expect(tracking.map(\.sequence) == Array(1...Int64(tracking.count)))
        }
    }

    @Test("a report that is late, repeated or from another flight is ignored; after a reschedule the new flight's reports count from 1 and the old flight's are ignored")
    func lateAndForeignReports() async throws {
        try await withDelivery { logic, store in
            _ = try await schedule(logic)
            func report(_ sequence: Int64, flight: String, at location: CommonV1.Location) -> TelemetryV1.DronePosition {
                var report = position(.headedToPickup, at: location)
                report.sequence = sequence
                report.flightId = flight
                return report
            }
            let far = CommonV1.Location(latitude: 47.600, longitude: -122.34)
            let nearer = CommonV1.Location(latitude: 47.605, longitude: -122.34)
            #expect(try await logic.apply(report(2, flight: "d1-r0", at: nearer)) == 1)
            #expect(try await logic.apply(report(1, flight: "d1-r0", at: far)) == nil, "late: older than the last report taken")
            #expect(try await logic.apply(report(2, flight: "d1-r0", at: far)) == nil, "repeated")
            #expect(try await logic.apply(report(3, flight: "d1-r9", at: far)) == nil, "another flight's")
            #expect(try await store.record(id: "d1")?.status.lastKnownLocation == nearer, "the ignored reports moved nothing")
            #expect(try await store.trackingEvents(deliveryID: "d1", after: 0).count == 2, "scheduled, and the one report taken")

            var reschedule = DeliveryV1.RescheduleDeliveryRequest()
            reschedule.deliveryId = "d1"
            reschedule.dropoffLocation = dropoff.interpolated(to: pickup, fraction: 0.1)
            _ = try await logic.rescheduleDelivery(reschedule, context: .inProcess())
            #expect(try await logic.apply(report(3, flight: "d1-r0", at: far)) == nil, "the flight before the reschedule")
            #expect(try await logic.apply(report(1, flight: "d1-r1", at: far)) == 1, "the new flight's first report")
            #expect(try await store.record(id: "d1")?.status.lastKnownLocation == far)
            #expect(try await logic.apply(report(0, flight: "", at: nearer)) == 1, "a drone that does not number its reports")
        }
    }

    @Test("a delivery that needs a fingerprint waits at the drop-off until confirmed with the right kind")
    func confirmation() async throws {
        try await withDelivery { logic, store in
            _ = try await schedule(logic, confirmation: .fingerprint)
            var confirm = DeliveryV1.ConfirmDeliveryRequest()
            confirm.deliveryId = "d1"
            var proof = DeliveryV1.Confirmation()
            proof.confirmationType = .fingerprint
            confirm.confirmation = proof
            await #expect { try await logic.confirmDelivery(confirm, context: .inProcess()) } throws: { ($0 as? RPCError)?.code == .failedPrecondition }
            _ = try await logic.apply(position(.atDropoff, at: dropoff))
            #expect(try await store.record(id: "d1")?.status.stage == .headedToDropoff, "arrived, awaiting confirmation")
            confirm.confirmation?.confirmationType = .picture
            await #expect { try await logic.confirmDelivery(confirm, context: .inProcess()) } throws: { ($0 as? RPCError)?.code == .invalidArgument }
            confirm.confirmation?.confirmationType = .fingerprint
            #expect(try await logic.confirmDelivery(confirm, context: .inProcess()).stage == .completed)
        }
    }

    @Test("cancel ends the delivery once; failing a delivery Delivery never saw leaves a Failed record")
    func endings() async throws {
        try await withDelivery { logic, store in
            _ = try await schedule(logic)
            var cancel = DeliveryV1.CancelDeliveryRequest()
            cancel.deliveryId = "d1"
            cancel.operationId = "op-1"
            #expect(try await logic.cancelDelivery(cancel, context: .inProcess()).stage == .cancelled)
            #expect(try await logic.cancelDelivery(cancel, context: .inProcess()).stage == .cancelled, "repeated: the same answer")
            #expect(try await store.outbox(limit: 100).filter { $0.event.stage == .cancelled }.count == 1)
            var fail = DeliveryV1.MarkDeliveryFailedRequest()
            fail.deliveryId = "d-unknown"
            fail.sagaId = "s1"
            var owner = CommonV1.Owner()
            owner.accountId = "acct-x"
            fail.owner = owner
            fail.pickupLocation = pickup
            fail.dropoffLocation = dropoff
            #expect(try await logic.markDeliveryFailed(fail, context: .inProcess()).stage == .failed)
            var get = DeliveryV1.GetDeliveryRequest()
            get.deliveryId = "d-unknown"
            let failed = try await logic.getDelivery(get, context: .inProcess())
            #expect(failed.owner?.accountId == "acct-x", "kept for its owner, who can see the failure")
            #expect(failed.pickupLocation == pickup && failed.dropoffLocation == dropoff && failed.droneId.isEmpty, "\(failed)")
            #expect(failed.validationViolations().isEmpty, "what Delivery stores keeps Delivery's field rules: \(failed.validationViolations())")
        }
    }

    @Test("a delivery Delivery never heard of is not recorded without its locations: INVALID_ARGUMENT naming each one, then recorded once they come")
    func unknownDeliveryNeedsLocations() async throws {
        try await withDelivery { logic, store in
            var owner = CommonV1.Owner()
            owner.accountId = "acct"
            var fail = DeliveryV1.MarkDeliveryFailedRequest()
            fail.deliveryId = "d-failed"
            fail.sagaId = "s1"
            fail.owner = owner
            fail.pickupLocation = pickup
            var cancel = DeliveryV1.CancelDeliveryRequest()
            cancel.deliveryId = "d-cancelled"
            cancel.operationId = "cancel-1"
            cancel.owner = owner
            func violatedFields(_ call: () async throws -> DeliveryV1.Delivery) async -> [String] {
                let error = await #expect(throws: RPCError.self) { try await call() }
                #expect(error?.code == .invalidArgument, "\(String(describing: error))")
                return (try? error?.detail(Google.Rpc.BadRequest.self))?.fieldViolations.map(\.field) ?? []
            }
            #expect(await violatedFields { try await logic.markDeliveryFailed(fail, context: .inProcess()) } == ["dropoff_location"])
            #expect(await violatedFields { try await logic.cancelDelivery(cancel, context: .inProcess()) } == ["pickup_location", "dropoff_location"])
            #expect(try await store.record(id: "d-failed") == nil, "nothing recorded")
            #expect(try await store.record(id: "d-cancelled") == nil, "nothing recorded")

            fail.dropoffLocation = dropoff
            cancel.pickupLocation = pickup
            cancel.dropoffLocation = dropoff
            #expect(try await logic.markDeliveryFailed(fail, context: .inProcess()).stage == .failed)
            #expect(try await logic.cancelDelivery(cancel, context: .inProcess()).stage == .cancelled)
            for id in ["d-failed", "d-cancelled"] {
                var get = DeliveryV1.GetDeliveryRequest()
                get.deliveryId = id
                let delivery = try await logic.getDelivery(get, context: .inProcess())
                #expect(delivery.validationViolations().isEmpty, "\(id): \(delivery.validationViolations())")
                #expect(delivery.pickupLocation == pickup && delivery.dropoffLocation == dropoff)
            }
            // Without an owner nothing is recorded for a delivery Delivery does not have.
            fail.deliveryId = "d-nobody"
            fail.owner = nil
            await #expect { try await logic.markDeliveryFailed(fail, context: .inProcess()) } throws: { ($0 as? RPCError)?.code == .notFound }
        }
    }

    @Test("ScheduleDelivery still needs a drone (no longer a field rule of Delivery): INVALID_ARGUMENT naming delivery.drone_id")
    func scheduleNeedsDrone() async throws {
        try await withDelivery { logic, _ in
            var request = Self.scheduleRequest(from: pickup, to: dropoff)
            request.delivery?.droneId = ""
            let error = await #expect(throws: RPCError.self) { try await logic.scheduleDelivery(request, context: .inProcess()) }
            #expect(error?.code == .invalidArgument)
            #expect((try? error?.detail(Google.Rpc.BadRequest.self))?.fieldViolations.map(\.field) == ["delivery.drone_id"])
        }
    }

    @Test("a delivery cancelled before it was scheduled is kept Cancelled for its owner and refuses its schedule; a failed change shows in the status")
    func cancelBeforeScheduleAndFailedChange() async throws {
        try await withDelivery { logic, store in
            var cancel = DeliveryV1.CancelDeliveryRequest()
            cancel.deliveryId = "d1"
            cancel.operationId = "cancel-1"
            await #expect { try await logic.cancelDelivery(cancel, context: .inProcess()) } throws: { ($0 as? RPCError)?.code == .notFound }
            var owner = CommonV1.Owner()
            owner.accountId = "acct"
            cancel.owner = owner
            cancel.pickupLocation = pickup
            cancel.dropoffLocation = dropoff
            #expect(try await logic.cancelDelivery(cancel, context: .inProcess()).stage == .cancelled, "still waiting to be scheduled: cancelled there")
            await #expect { try await schedule(logic) } throws: { ($0 as? RPCError)?.code == .failedPrecondition }
            #expect(try await store.record(id: "d1")?.status.stage == .cancelled)
            #expect(try await store.flightAbort(deliveryID: "d1") == nil, "nothing was flying: the abort is done (flight control said so)")

            var record = DeliveryV1.RecordFailedChangeRequest()
            record.deliveryId = "d1"
            var change = DeliveryV1.FailedChange()
            change.operation = .reschedule
            change.reason = "delivery d1 is CANCELLED and can no longer be rescheduled"
            change.operationId = "msg-7"
            record.change = change
            let status = try await logic.recordFailedChange(record, context: .inProcess())
            #expect(status.failedChange?.operation == .reschedule && status.failedChange?.time != nil)
            var get = DeliveryV1.GetDeliveryStatusRequest()
            get.deliveryId = "d1"
            #expect(try await logic.getDeliveryStatus(get, context: .inProcess()).status?.failedChange?.operationId == "msg-7")
        }
    }

    @Test("Delivery History records each event once, however often it is delivered, and dead-letters garbage")
    func historyIsIdempotent() async throws {
        let store = try SQLiteHistoryStore(path: try makeTemporaryDirectory("history").appendingPathComponent("h.sqlite").path)
        let logic = DeliveryHistoryServiceLogic(store: store)
        var event = DeliveryV1.DeliveryEvent()
        event.eventId = "d1-1"
        event.deliveryId = "d1"
        event.stage = .created
        event.eventTime = .now
        let message = ReceivedMessage(queue: "q", sequence: 1, id: "d1-1", key: "d1", headers: [:], payload: try event.serializedBytes(), deliveryCount: 1, enqueueTime: 0)
        #expect(await logic.handleDeliveryEvent(message) == .acknowledge)
        #expect(await logic.handleDeliveryEvent(message) == .acknowledge)
        var request = DeliveryHistoryV1.GetDeliveryHistoryRequest()
        request.deliveryId = "d1"
        #expect(try await logic.getDeliveryHistory(request, context: .inProcess()).events.count == 1)
        var garbage = message
        garbage.payload = [0xff, 0xff]
        guard case .deadLetter(let reason) = await logic.handleDeliveryEvent(garbage) else {
            Issue.record("garbage was not dead-lettered")
            return
        }
        #expect(reason.contains("DeliveryEvent"))
    }
}
