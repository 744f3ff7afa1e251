#if canImport(Glibc)
import Glibc
#endif
import DroneDeliveryAPI
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Testing

/// A delivery request from the demo account (seeded by accounts-service) in downtown Seattle.
func deliveryRequest(requestID: String = "", weight: Double = 1.5, confirmation: CommonV1.ConfirmationType = .none) -> IngestionV1.CreateDeliveryRequest {
    var request = IngestionV1.CreateDeliveryRequest()
    var owner = CommonV1.Owner()
    owner.accountId = "acct-demo"
    owner.userId = "alice"
    request.owner = owner
    request.pickupLocation = CommonV1.Location(latitude: 47.6101, longitude: -122.3421)
    request.dropoffLocation = CommonV1.Location(latitude: 47.6205, longitude: -122.3493)
    var package = CommonV1.PackageInfo()
    package.size = .small
    package.weight = weight
    package.tag = "books"
    request.packageInfo = package
    request.confirmationRequired = confirmation
    request.requestId = requestID
    return request
}

extension RunningSystem {
    func status(_ deliveryID: String) async throws -> DeliveryV1.DeliveryStatus {
        var request = DeliveryV1.GetDeliveryStatusRequest()
        request.deliveryId = deliveryID
        return try await delivery.getDeliveryStatus(request).status ?? DeliveryV1.DeliveryStatus()
    }

    func waitForStage(_ deliveryID: String, _ stage: CommonV1.DeliveryStage, timeout: Duration = .seconds(60)) async throws {
        try await waitFor("delivery \(deliveryID) to reach \(stage)", timeout: timeout) { try await self.status(deliveryID).stage == stage }
    }

    func historyStages(_ deliveryID: String) async throws -> [CommonV1.DeliveryStage] {
        var request = DeliveryHistoryV1.GetDeliveryHistoryRequest()
        request.deliveryId = deliveryID
        return try await history.getDeliveryHistory(request).events.map(\.stage)
    }

    func sagas(_ deliveryID: String) async throws -> [WorkflowV1.SagaStatus] {
        var request = WorkflowV1.GetSagaStatusRequest()
        request.deliveryId = deliveryID
        return try await workflow.getSagaStatus(request).sagas
    }

    func fleet() async throws -> [DroneSchedulerV1.Drone] {
        var request = DroneSchedulerV1.GetFleetStatusRequest()
        request.includeDrones = true
        return try await scheduler.getFleetStatus(request).drones
    }

    func failedSagas(_ deliveryID: String) async throws -> [SupervisorV1.FailedSaga] {
        var request = SupervisorV1.ListFailedSagasRequest()
        request.deliveryId = deliveryID
        return try await supervisor.listFailedSagas(request).sagas
    }

    func package(_ id: String) async throws -> PackageV1.Package {
        var request = PackageV1.GetPackageRequest()
        request.packageId = id
        return try await packages.getPackage(request)
    }

    /// The broker file the services share (tests open it like any other process would).
    func broker() throws -> SQLiteBroker { try SQLiteBroker(path: dataDirectory.appendingPathComponent("broker.sqlite").path) }
}

/// Runs `body` against a freshly started system and always stops it.
func withSystem(_ settings: [String: String] = [:], _ body: (RunningSystem) async throws -> Void) async throws {
    let system = try await RunningSystem(settings)
    do {
        try await body(system)
    } catch {
        // Keep the logs in the failure report: they are in a folder about to be removed.
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: system.dataDirectory.appendingPathComponent("logs").path)) ?? []
        for name in logs.sorted() {
            let text = (try? String(contentsOf: system.dataDirectory.appendingPathComponent("logs/\(name)"), encoding: .utf8)) ?? ""
            print("--- \(name) (last lines)\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n"))
        }
        await system.stop()
        throw error
    }
    await system.stop()
}

extension EndToEndTests {
    @Suite("End to end: the real processes, started by tools/run.sh", .serialized)
    struct DeliveryFlowTests {
        @Test("a request reaches Completed with a drone assigned, a full history, and the drone freed")
        func deliveryCompletes() async throws {
            try await withSystem { system in
                let accepted = try await system.ingestion.createDelivery(deliveryRequest())
                #expect(accepted.statusPath == "/v1/deliveries/\(accepted.deliveryId)/status")
                try await system.waitForStage(accepted.deliveryId, .completed)

                var get = DeliveryV1.GetDeliveryRequest()
                get.deliveryId = accepted.deliveryId
                let delivery = try await system.delivery.getDelivery(get)
                #expect(delivery.droneId.hasPrefix("drone-"))
                let status = try await system.status(accepted.deliveryId)
                #expect(status.deliveryEta != nil && status.pickupEta != nil)
                #expect(status.lastKnownLocation.map { $0.distance(to: delivery.dropoffLocation!) < 5 } == true)

                // Tracking from the start replays every event and ends at Completed.
                var track = DeliveryV1.TrackDeliveryRequest()
                track.deliveryId = accepted.deliveryId
                let events = try await system.delivery.trackDelivery(track) { stream in
                    var events: [DeliveryV1.DeliveryTrackingEvent] = []
                    for try await event in stream { events.append(event) }
                    return events
                }
                #expect(events.last?.stage == .completed)
                #expect(events.map(\.sequence) == Array(1...Int64(events.count)))

                try await waitFor("the history to hold every stage") {
                    try await system.historyStages(accepted.deliveryId) == [.created, .headedToPickup, .headedToDropoff, .completed]
                }
                let sagas = try await system.sagas(accepted.deliveryId)
                #expect(sagas.count == 1)
                #expect(sagas.first?.state == .succeeded)
                #expect(sagas.first?.steps.map(\.step) == [.checkAccount, .putPackage, .assignDrone, .scheduleDelivery])
                #expect(try await system.package(delivery.packageId).deliveryId == accepted.deliveryId)
                try await waitFor("the drone to be free again") {
                    try await system.fleet().first { $0.droneId == delivery.droneId }?.status == .available
                }
                var utilization = DroneSchedulerV1.GetDroneUtilizationRequest()
                utilization.ownerId = "acct-demo"
                let now = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date())
                utilization.year = Int32(now.year!)
                utilization.month = Int32(now.month!)
                let used = try await system.scheduler.getDroneUtilization(utilization)
                #expect(used.traveledMiles > 0.5 && used.assignedHours > 0)
            }
        }

        @Test("a repeated request with the same request id creates nothing twice")
        func duplicateRequest() async throws {
            try await withSystem { system in
                let request = deliveryRequest(requestID: "order-4711")
                let first = try await system.ingestion.createDelivery(request)
                let second = try await system.ingestion.createDelivery(request)
                #expect(first.deliveryId == second.deliveryId)
                #expect(first.acceptTime == second.acceptTime)
                try await system.waitForStage(first.deliveryId, .completed)
                let third = try await system.ingestion.createDelivery(request)
                #expect(third.deliveryId == first.deliveryId)
                // Ingestion answers only once its decision is stored: a repeat that had been
                // queued again would already be counted here, so no wait is needed to see that
                // nothing second was accepted (and so no second saga can start).
                #expect(try await system.broker().acceptedCount(of: "delivery-requests") == 1)
                #expect(try await system.sagas(first.deliveryId).count == 1)
                var summary = PackageV1.GetPackageSummaryRequest()
                summary.ownerId = "acct-demo"
                #expect(try await system.packages.getPackageSummary(summary).packageCount == 1)
                #expect(try await system.historyStages(first.deliveryId).filter { $0 == .created }.count == 1)
            }
        }

        @Test("a downstream that is down: the saga retries, fails, and is compensated (no drone held, no package left)")
        func downstreamDownCompensates() async throws {
            try await withSystem { system in
                try await system.kill("delivery", signal: SIGTERM)
                let accepted = try await system.ingestion.createDelivery(deliveryRequest())
                try await waitFor("the saga to fail and reach the Supervisor") {
                    try await system.failedSagas(accepted.deliveryId).count == 1
                }
                let saga = try #require(try await system.sagas(accepted.deliveryId).first)
                #expect(saga.state == .failed)
                let schedule = try #require(saga.steps.first { $0.step == .scheduleDelivery })
                #expect(schedule.state == .failed && schedule.attempts == 4, "retried up to the step limit")
                #expect(schedule.lastError?.code == Int32(RPCError.Code.unavailable.rawValue))

                // The compensations that do not need Delivery happen while it is still down.
                try await waitFor("the drone to be released and the package deleted") {
                    let failed = try await system.failedSagas(accepted.deliveryId).first
                    let done = failed?.compensations.filter { $0.state == .succeeded }.map(\.kind) ?? []
                    return done.contains(.releaseDrone) && done.contains(.deletePackage)
                }
                #expect(try await system.fleet().allSatisfy { $0.status == .available })
                let packageID = try #require(try await system.failedSagas(accepted.deliveryId).first?.packageId)
                await #expect(throws: RPCError.self) { try await system.package(packageID) }

                // Delivery comes back; the last compensation marks the delivery Failed.
                try await system.start("delivery")
                try await system.waitForStage(accepted.deliveryId, .failed)
                let status = try await system.http("GET", "/v1/deliveries/\(accepted.deliveryId)/status")
                #expect(status.status == 200 && status.json["stage"] as? String == "DELIVERY_STAGE_FAILED", "its owner sees the failure: \(status.body)")
                // Recorded by the compensation (Delivery never heard of it) with the create
                // request's locations: a Delivery that keeps its own field rules.
                var get = DeliveryV1.GetDeliveryRequest()
                get.deliveryId = accepted.deliveryId
                let failed = try await system.delivery.getDelivery(get)
                #expect(failed.validationViolations().isEmpty, "\(failed.validationViolations()): \(failed)")
                #expect(failed.pickupLocation == deliveryRequest().pickupLocation && failed.dropoffLocation == deliveryRequest().dropoffLocation)
                try await waitFor("the failed saga to be compensated") {
                    try await system.failedSagas(accepted.deliveryId).first?.state == .compensated
                }

                // Retried forward once Delivery is back: a new saga, assigned a drone afresh
                // (its first assignment was released; it is never handed out again).
                let first = try await system.assignment(accepted.deliveryId)
                #expect(first.state == .released)
                var retry = SupervisorV1.RetryFailedSagaRequest()
                retry.sagaId = try #require(try await system.failedSagas(accepted.deliveryId).first?.sagaId)
                _ = try await system.supervisor.retryFailedSaga(retry)
                try await system.waitForStage(accepted.deliveryId, .completed, timeout: .seconds(90))
                let second = try await system.assignment(accepted.deliveryId)
                #expect(second.requestKey == first.requestKey + ":retry-1", "a fresh assignment, under the retried saga's id: \(second.requestKey)")
                #expect(try await system.failedSagas(accepted.deliveryId).first?.forwardRetries == 1)
                #expect(try await system.sagas(accepted.deliveryId).map(\.state) == [.failed, .succeeded])
            }
        }

        @Test("SIGKILL of Workflow in the middle of a saga loses nothing: it finishes after a restart")
        func workflowCrashResumes() async throws {
            try await withSystem(["FABRIKAM_STEP_ATTEMPTS": "100", "FABRIKAM_STEP_BACKOFF_MS": "300"]) { system in
                try await system.kill("delivery", signal: SIGTERM)
                let accepted = try await system.ingestion.createDelivery(deliveryRequest())
                try await waitFor("the saga to be stuck retrying the schedule step") {
                    let saga = try await system.sagas(accepted.deliveryId).first
                    return (saga?.steps.first { $0.step == .scheduleDelivery }?.attempts ?? 0) >= 2
                }
                let before = try #require(try await system.sagas(accepted.deliveryId).first)
                #expect(before.steps.prefix(3).allSatisfy { $0.state == .succeeded })
                try await system.kill("workflow", signal: SIGKILL)
                try await system.start("delivery")
                try await system.start("workflow")
                try await system.waitForStage(accepted.deliveryId, .completed)
                let after = try #require(try await system.sagas(accepted.deliveryId).first)
                #expect(after.state == .succeeded)
                #expect(after.sagaId == before.sagaId)
                // The checkpointed steps were not run again: one drone, assigned once.
                #expect(after.steps.first { $0.step == .assignDrone }?.attempts == 1)
                try await waitFor("every drone to be free") { try await system.fleet().allSatisfy { $0.status == .available } }
            }
        }

        @Test("cancel in flight ends Cancelled and frees the drone; reschedule after arrival flies to the new drop-off")
        func cancelAndReschedule() async throws {
            try await withSystem(["FABRIKAM_TIME_SCALE": "15"]) { system in
                // Cancel while the drone is on its way.
                let cancelled = try await system.ingestion.createDelivery(deliveryRequest())
                try await system.waitForStage(cancelled.deliveryId, .headedToPickup)
                var cancel = IngestionV1.CancelDeliveryRequest()
                cancel.deliveryId = cancelled.deliveryId
                cancel.reason = "customer changed their mind"
                _ = try await system.ingestion.cancelDelivery(cancel)
                try await system.waitForStage(cancelled.deliveryId, .cancelled)
                var assignment = DroneSchedulerV1.GetAssignmentRequest()
                assignment.deliveryId = cancelled.deliveryId
                try await waitFor("the drone to be released") { try await system.scheduler.getAssignment(assignment).state == .released }
                #expect(try await system.sagas(cancelled.deliveryId).map(\.operation) == [.create, .cancel])
                try await waitFor("the history to end Cancelled") { try await system.historyStages(cancelled.deliveryId).last == .cancelled }
                try await Task.sleep(for: .seconds(1))
                #expect(try await system.status(cancelled.deliveryId).stage == .cancelled, "positions after the cancel are ignored")

                // A delivery that needs a fingerprint waits at the drop-off; move the drop-off, then confirm.
                let moved = try await system.ingestion.createDelivery(deliveryRequest(confirmation: .fingerprint))
                var get = DeliveryV1.GetDeliveryRequest()
                get.deliveryId = moved.deliveryId
                try await waitFor("the drone to arrive at the first drop-off", timeout: .seconds(90)) {
                    let status = try await system.status(moved.deliveryId)
                    let delivery = try await system.delivery.getDelivery(get)
                    return status.stage == .headedToDropoff && (status.lastKnownLocation?.distance(to: delivery.dropoffLocation!) ?? 1e9) < 1
                }
                let newDropoff = CommonV1.Location(latitude: 47.6150, longitude: -122.3300)
                var reschedule = IngestionV1.RescheduleDeliveryRequest()
                reschedule.deliveryId = moved.deliveryId
                reschedule.dropoffLocation = newDropoff
                _ = try await system.ingestion.rescheduleDelivery(reschedule)
                try await waitFor("the drone to reach the new drop-off", timeout: .seconds(90)) {
                    (try await system.status(moved.deliveryId).lastKnownLocation?.distance(to: newDropoff) ?? 1e9) < 1
                }
                var confirm = DeliveryV1.ConfirmDeliveryRequest()
                confirm.deliveryId = moved.deliveryId
                var confirmation = DeliveryV1.Confirmation()
                confirmation.confirmationType = .fingerprint
                confirmation.blob = [1, 2, 3]
                confirm.confirmation = confirmation
                let confirmed = try await system.delivery.confirmDelivery(confirm)
                #expect(confirmed.stage == .completed)
                #expect(confirmed.dropoffLocation == newDropoff)
                try await waitFor("the history to show the reschedule and the completion") {
                    let stages = try await system.historyStages(moved.deliveryId)
                    return stages.contains(.rescheduled) && stages.last == .completed
                }
            }
        }

        @Test("a malformed message lands in the dead-letter queue with its reason and does not block the queue")
        func malformedMessageIsDeadLettered() async throws {
            try await withSystem { system in
                let broker = try system.broker()
                _ = try await broker.send(OutgoingMessage(id: "garbage-1", key: "dlv-garbage", payload: [0xff, 0xff, 0xff, 0x0f]), to: "delivery-requests")
                var wrongKind = IngestionV1.RequestEnvelope()
                wrongKind.messageId = "mismatch-1"
                wrongKind.deliveryId = "dlv-mismatch"
                wrongKind.operation = .cancel
                wrongKind.payload = .create(IngestionV1.DeliveryRequest())
                _ = try await broker.send(OutgoingMessage(id: "mismatch-1", key: "dlv-mismatch", payload: wrongKind.serializedBytes()), to: "delivery-requests")
                let accepted = try await system.ingestion.createDelivery(deliveryRequest())
                try await system.waitForStage(accepted.deliveryId, .completed)
                let dead = try await broker.deadLetters(of: "delivery-requests")
                #expect(dead.map(\.id).sorted() == ["garbage-1", "mismatch-1"])
                #expect(dead.first { $0.id == "garbage-1" }?.reason.contains("RequestEnvelope") == true)
                #expect(dead.first { $0.id == "mismatch-1" }?.reason.contains("does not match") == true)
                #expect(dead.first { $0.id == "garbage-1" }?.payload == [0xff, 0xff, 0xff, 0x0f], "kept as it was")
                #expect(try await broker.depth(of: "delivery-requests") == 0)
            }
        }
    }
}
