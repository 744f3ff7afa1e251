#if canImport(Glibc)
import Glibc
#endif
import DroneDeliveryAPI
import DroneSimulator
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Synchronization
import Testing

extension RunningSystem {
    func assignment(_ deliveryID: String) async throws -> DroneSchedulerV1.Assignment {
        var request = DroneSchedulerV1.GetAssignmentRequest()
        request.deliveryId = deliveryID
        return try await scheduler.getAssignment(request)
    }

    func cancel(_ deliveryID: String, reason: String = "no longer needed") async throws {
        var cancel = IngestionV1.CancelDeliveryRequest()
        cancel.deliveryId = deliveryID
        cancel.reason = reason
        _ = try await ingestion.cancelDelivery(cancel)
    }

    /// The simulator's own store (tests open it like any other process would).
    func flights() async throws -> [Flight] {
        try await SQLiteFlightStore(path: dataDirectory.appendingPathComponent("simulator.sqlite").path).flights()
    }
}

extension EndToEndTests {
    @Suite("End to end: load, cancels and faults", .serialized)
    struct FaultFlowTests {
        @Test("more deliveries than drones: each waits in line and completes, drones go out in order of acceptance, no attempt is spent waiting")
        func loadLevelling() async throws {
            // Two drones, eight deliveries, two attempts per step: retrying "no drone free" would
            // fail most of them (it did before the line existed).
            try await withSystem(["FABRIKAM_DRONES": "2", "FABRIKAM_STEP_ATTEMPTS": "2", "FABRIKAM_STEP_BACKOFF_MS": "50"]) { system in
                var ids: [String] = []
                for _ in 0..<8 { ids.append(try await system.ingestion.createDelivery(deliveryRequest()).deliveryId) }
                for id in ids { try await system.waitForStage(id, .completed, timeout: .seconds(180)) }
                let assigned = try await withThrowingTaskGroup(of: (Int, Double).self) { group in
                    for (index, id) in ids.enumerated() {
                        group.addTask { (index, try await system.assignment(id).assignTime?.secondsSince1970 ?? 0) }
                    }
                    return try await group.reduce(into: [Int: Double]()) { $0[$1.0] = $1.1 }
                }
                let order = assigned.sorted { $0.value < $1.value }.map(\.key)
                // The first two sagas to reach Drone Scheduler found a drone free (all eight race
                // through their first steps at once, so which two is not fixed); every other one
                // waited in line, and the line hands out drones in order of acceptance.
                let waited = Array(order.dropFirst(2))
                #expect(waited == waited.sorted(), "drones went to the waiting deliveries in order of acceptance: \(order)")
                for id in ids {
                    let saga = try #require(try await system.sagas(id).first)
                    #expect(saga.state == .succeeded)
                    #expect(saga.steps.first { $0.step == .assignDrone }?.attempts == 1, "waiting counted no attempt")
                }
                #expect(try await system.broker().deadLetters(of: "delivery-requests").isEmpty)
            }
        }

        @Test("a delivery still waiting for a drone is cancelled where it waits; a cancel that fails shows in the status and can be tried again")
        func cancelRequestedDelivery() async throws {
            try await withSystem(["FABRIKAM_DRONES": "1", "FABRIKAM_TIME_SCALE": "8"]) { system in
                let flying = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await system.waitForStage(flying, .headedToPickup)
                let waiting = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await waitFor("the second delivery to wait in line") { try await system.sagas(waiting).first?.state == .waiting }
                try await system.cancel(waiting)
                try await system.waitForStage(waiting, .cancelled, timeout: .seconds(20))
                // Recorded by the cancel (Delivery had not heard of it) with the create request's
                // locations: a Delivery that keeps its own field rules.
                var get = DeliveryV1.GetDeliveryRequest()
                get.deliveryId = waiting
                let cancelled = try await system.delivery.getDelivery(get)
                #expect(cancelled.validationViolations().isEmpty, "\(cancelled.validationViolations()): \(cancelled)")
                #expect(cancelled.pickupLocation == deliveryRequest().pickupLocation && cancelled.dropoffLocation == deliveryRequest().dropoffLocation)
                #expect(try await system.status(flying).stage != .completed, "cancelled while the first was still flying")
                try await waitFor("the waiting saga to stop and give back what it held") {
                    try await system.failedSagas(waiting).first?.state == .compensated
                }
                try await system.waitForStage(flying, .completed, timeout: .seconds(120))
                let neverAssigned = await #expect(throws: RPCError.self, "it never got a drone") { try await system.assignment(waiting) }
                #expect(neverAssigned?.code == .notFound)
                try await waitFor("the drone to be free (not kept for the cancelled delivery)") {
                    try await system.fleet().allSatisfy { $0.status == .available }
                }

                // Cancelling a completed delivery fails: its owner sees why, and may ask again.
                try await system.cancel(flying, reason: "too late")
                try await waitFor("the failed cancel to show in the status") {
                    try await system.status(flying).failedChange?.operation == .cancel
                }
                #expect(try await system.status(flying).failedChange?.reason.lowercased().contains("completed") == true)
                try await system.cancel(flying, reason: "again")
                try await waitFor("the second cancel to run (not de-duplicated away)") {
                    try await system.sagas(flying).filter { $0.operation == .cancel }.count == 2
                }
            }
        }

        @Test("a cancel while the simulator is down still stops the flight once it is back; the drone then flies again")
        func cancelWhileSimulatorDown() async throws {
            try await withSystem(["FABRIKAM_DRONES": "1", "FABRIKAM_TIME_SCALE": "8"]) { system in
                let id = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await system.waitForStage(id, .headedToPickup)
                try await system.kill("simulator", signal: SIGKILL)
                try await system.cancel(id)
                try await system.waitForStage(id, .cancelled, timeout: .seconds(20))
                #expect(try await system.flights().map(\.plan.deliveryId) == [id], "the simulator was down: its flight is still on file")
                try await system.start("simulator")
                try await waitFor("the flight to be aborted", timeout: .seconds(30)) { try await system.flights().isEmpty }
                let next = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await system.waitForStage(next, .completed, timeout: .seconds(120))
            }
        }

        @Test("a flight that stops reporting is noticed: the delivery fails, its tracking stream ends, the drone is out of service until it registers again")
        func silentFlight() async throws {
            try await withSystem(["FABRIKAM_DRONES": "1", "FABRIKAM_TIME_SCALE": "8", "FABRIKAM_FLIGHT_SILENCE_SECONDS": "3"]) { system in
                let id = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await system.waitForStage(id, .headedToPickup)
                let tracking = Task {
                    var track = DeliveryV1.TrackDeliveryRequest()
                    track.deliveryId = id
                    return try await system.delivery.trackDelivery(track) { stream in
                        var stages: [CommonV1.DeliveryStage] = []
                        for try await event in stream { stages.append(event.stage) }
                        return stages
                    }
                }
                try await system.kill("simulator", signal: SIGKILL)
                try await system.waitForStage(id, .failed, timeout: .seconds(30))
                #expect(try await tracking.value.last == .failed, "the tracking stream ended at FAILED")
                // Drone Scheduler learns of the loss from Delivery's event stream, a moment later.
                try await waitFor("the lost drone to be out of service, holding no delivery") {
                    let drone = try await system.fleet().first
                    return drone?.status == .offline && drone?.currentDeliveryId.isEmpty == true
                }
                try await waitFor("the history to end FAILED") { try await system.historyStages(id).last == .failed }

                try await system.start("simulator")  // it reports again
                try await waitFor("the drone to be back in service") { try await system.fleet().first?.status == .available }
                try await waitFor("the lost flight to be aborted", timeout: .seconds(30)) { try await system.flights().isEmpty }
                let next = try await system.ingestion.createDelivery(deliveryRequest()).deliveryId
                try await system.waitForStage(next, .completed, timeout: .seconds(120))
            }
        }

        static let ingestionCallers = 32

        @Test("SIGKILL of Ingestion while answers are still arriving: every request that got an answer is delivered")
        func ingestionKilledMidStream() async throws {
            try await withSystem(["FABRIKAM_DRONES": "24"]) { system in
                let tally = Tally()
                let callers = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for caller in 0..<Self.ingestionCallers {
                            group.addTask {
                                for index in 0..<1000 {
                                    do {
                                        let id = try await system.ingestion.createDelivery(deliveryRequest(requestID: "c\(caller)-\(index)"),
                                                                                        options: CallOptions(timeout: .seconds(10))).deliveryId
                                        tally.answered.withLock { $0.append(id) }
                                    } catch {
                                        tally.failed.add(1, ordering: .relaxed)
                                        return
                                    }
                                }
                            }
                        }
                    }
                }
                // Killed while every caller has a request in flight, well into the run: a request answered
                // before its commit would be missing from both the queue and Delivery.
                try await waitFor("answers to arrive") { tally.answered.withLock { $0.count } >= 300 }
                try await system.kill("ingestion", signal: SIGKILL)
                await callers.value
                let ids = tally.answered.withLock { $0 }
                #expect(tally.failed.load(ordering: .relaxed) == Self.ingestionCallers, "every caller was still sending when Ingestion died")
                #expect(Set(ids).count == ids.count)
                let broker = try system.broker()
                for id in ids {
                    let queued = try await broker.messages(in: "delivery-requests", key: id).isEmpty == false
                    let scheduled = (try? await system.status(id)) != nil
                    #expect(queued || scheduled, "answered request \(id) is on the queue or scheduled")
                }
                for id in ids { try await system.waitForStage(id, .completed, timeout: .seconds(180)) }
            }
        }
    }
}

/// What the callers of the Ingestion crash test saw: the delivery ids answered, and how many
/// callers ended on an error.
private final class Tally: Sendable {
    let answered = Mutex<[String]>([])
    let failed = Atomic(0)
}
