import DroneDeliveryAPI
@testable import DroneScheduler
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Storage
import Testing
import TestSupport

/// Drone Scheduler's line of deliveries waiting for a drone, and the rules that keep one drone
/// on one delivery: in process, against its real SQLite store.
@Suite("Drone Scheduler: waiting in line, and never a drone twice")
struct DroneLineTests {
    let logic: DroneSchedulerServiceLogic
    let context = ServerContext.inProcess()

    init() throws {
        logic = DroneSchedulerServiceLogic(store: try SQLiteDroneStore(path: makeTemporaryDirectory("drone-line").appendingPathComponent("d.sqlite").path))
    }

    func register(_ id: String, size: CommonV1.PackageSize = .small, capacity: Double = 2,
                  home: CommonV1.Location = CommonV1.Location(latitude: 0, longitude: 0)) async throws {
        var drone = DroneSchedulerV1.Drone()
        drone.droneId = id
        drone.capacityKg = capacity
        drone.maxPackageSize = size
        drone.cruiseSpeedMps = 15
        drone.status = .available
        drone.homeLocation = home
        var request = DroneSchedulerV1.RegisterDroneRequest()
        request.drone = drone
        _ = try await logic.registerDrone(request, context: context)
    }

    func request(_ delivery: String, key: String? = nil, queuedAt: Double = 0, weight: Double = 1, waitUntil: Double? = nil) -> DroneSchedulerV1.AssignDroneRequest {
        var request = DroneSchedulerV1.AssignDroneRequest()
        request.deliveryId = delivery
        request.requestKey = key ?? "saga-\(delivery)"
        request.pickupLocation = CommonV1.Location(latitude: 0, longitude: 0)
        request.dropoffLocation = CommonV1.Location(latitude: 0.01, longitude: 0)
        var info = CommonV1.PackageInfo()
        info.size = .small
        info.weight = weight
        request.packageInfo = info
        request.wait = true
        request.queuedTime = Timestamp(secondsSince1970: 1_800_000_000 + queuedAt)
        request.waitUntil = waitUntil.map { Timestamp(secondsSince1970: $0) }
        return request
    }

    func assign(_ request: DroneSchedulerV1.AssignDroneRequest) async throws -> DroneSchedulerV1.AssignDroneResponse {
        try await logic.assignDrone(request, context: context)
    }

    func release(_ delivery: String, reason: String = "completed") async throws -> DroneSchedulerV1.ReleaseDroneResponse {
        var release = DroneSchedulerV1.ReleaseDroneRequest()
        release.deliveryId = delivery
        release.reason = reason
        return try await logic.releaseDrone(release, context: context)
    }

    func code<T>(_ body: () async throws -> T) async -> RPCError.Code? {
        do { _ = try await body(); return nil } catch { return (error as? RPCError)?.code }
    }

    @Test("a released drone goes to the delivery accepted first, not to the one that asked first or asks most")
    func firstComeFirstServed() async throws {
        try await register("d-1")
        #expect(try await assign(request("first", queuedAt: 1)).droneId == "d-1")
        // "third" reaches the line before "second" but was accepted after it.
        let third = try await assign(request("third", queuedAt: 3))
        let second = try await assign(request("second", queuedAt: 2))
        #expect(third.waiting && second.waiting)
        #expect(second.position == 1)
        #expect(try await assign(request("third", queuedAt: 3)).position == 2)
        _ = try await release("first")
        #expect(try await assign(request("third", queuedAt: 3)).waiting, "asking first does not jump the line")
        #expect(try await assign(request("second", queuedAt: 2)).droneId == "d-1")
        #expect(try await assign(request("third", queuedAt: 3)).position == 1)
        _ = try await release("second")
        #expect(try await assign(request("third", queuedAt: 3)).droneId == "d-1")
    }

    @Test("a drone that cannot carry the head of the line goes to the first one it can carry")
    func capabilityDoesNotBlockTheLine() async throws {
        // The small drone is nearer the pickup, so the first delivery gets it (nearest drone first).
        try await register("small", size: .small, capacity: 2)
        try await register("large", size: .large, capacity: 10, home: CommonV1.Location(latitude: 0.005, longitude: 0))
        #expect(try await assign(request("a")).droneId == "small")
        #expect(try await assign(request("b")).droneId == "large")
        #expect(try await assign(request("heavy", queuedAt: 1, weight: 8)).waiting)
        #expect(try await assign(request("light", queuedAt: 2)).waiting)
        _ = try await release("a")  // the small drone cannot carry 8 kg
        #expect(try await assign(request("light", queuedAt: 2)).droneId == "small")
        #expect(try await assign(request("heavy", queuedAt: 1, weight: 8)).waiting)
        _ = try await release("b")
        #expect(try await assign(request("heavy", queuedAt: 1, weight: 8)).droneId == "large")
    }

    @Test("a released assignment is never handed out again; a new request key assigns afresh")
    func releasedAssignmentIsNotReturned() async throws {
        try await register("d-1")
        try await register("d-2")
        #expect(try await assign(request("x")).droneId == "d-1")
        #expect(try await assign(request("other")).droneId == "d-2")
        _ = try await release("x", reason: "saga failed")
        #expect(try await assign(request("other-2")).droneId == "d-1", "the released drone flies something else now")
        #expect(await code { try await assign(request("x")) } == .failedPrecondition, "the same request gets no released drone")
        // A retried saga (RetryFailedSaga: a new key) waits for a drone of its own.
        let retried = try await assign(request("x", key: "saga-x:retry-1"))
        #expect(retried.waiting)
        _ = try await release("other")
        #expect(try await assign(request("x", key: "saga-x:retry-1")).droneId == "d-2")
    }

    @Test("leaving the line: a released (cancelled) waiting delivery gets no drone, and one whose wait_until passed is refused")
    func leavingTheLine() async throws {
        try await register("d-1")
        _ = try await assign(request("busy"))
        #expect(try await assign(request("cancelled", queuedAt: 1)).waiting)
        #expect(try await release("cancelled", reason: "cancelled").withdrawn)
        #expect(await code { try await assign(request("cancelled", queuedAt: 1)) } == .failedPrecondition)
        let past = Date().timeIntervalSince1970 - 1
        #expect(await code { try await assign(request("late", queuedAt: 2, waitUntil: past)) } == .failedPrecondition)
        #expect(try await assign(request("next", queuedAt: 3)).position == 1, "neither holds a place")
        _ = try await release("busy")
        #expect(try await assign(request("next", queuedAt: 3)).droneId == "d-1")
    }

    @Test("a delivery that left the line, or whose wait_until passed in line, is refused when it asks again, even with a drone free for it")
    func leftTheLineWhileADroneIsFree() async throws {
        // An assignment that finds a free drone takes it without the line, but only for a
        // delivery that has no place in the line, not even a place it has left.
        func message<T>(_ body: () async throws -> T) async -> String {
            do { _ = try await body(); return "no error" } catch { return "\(error)" }
        }
        try await register("d-1")
        _ = try await assign(request("busy"))
        #expect(try await assign(request("cancelled", queuedAt: 1)).waiting)
        let soon = Date().timeIntervalSince1970 + 0.3
        #expect(try await assign(request("late", queuedAt: 2, waitUntil: soon)).waiting)
        #expect(try await release("cancelled", reason: "cancelled").withdrawn)
        try await Task.sleep(for: .milliseconds(400))  // late's wait_until passes while it waits
        _ = try await release("busy")  // d-1 is free: the line has nobody it may go to
        #expect(await message { try await assign(request("cancelled", queuedAt: 1)) }.hasPrefix("FAILED_PRECONDITION: the drone assignment of delivery cancelled for request \"saga-cancelled\" ended (cancelled)"))
        #expect(await message { try await assign(request("late", queuedAt: 2, waitUntil: soon)) }.hasPrefix("FAILED_PRECONDITION: delivery late waited for a drone until"))
        #expect(try await assign(request("next", queuedAt: 3)).droneId == "d-1")
    }

    @Test("a delivery in line that asks again while a drone it can carry is free gets that drone, even one freed without serving the line")
    func waitingDeliveryFindsAFreeDrone() async throws {
        // A delivery in line that asks again reads its place without the fleet key, unless a
        // free drone could carry it: then the line is served (the repair for a drone freed by a
        // transaction that never served the line).
        try await register("d-1")
        _ = try await assign(request("busy"))
        #expect(try await assign(request("waiter", queuedAt: 1)).position == 1)
        let store = try #require(logic.store as? SQLDroneStore)
        var drone = try #require(try await store.drones(status: nil, offset: 0, limit: 10).first)
        drone.status = .available
        drone.currentDeliveryId = ""
        try await store.database.write { [drone] db in
            try db.run("UPDATE assignments SET active = 0 WHERE delivery_id = ?", [.text("busy")])
            try db.run("UPDATE drones SET status = ?, data = ? WHERE drone_id = ?",
                       [.integer(Int64(drone.status.rawValue)), .blob(drone.serializedBytes()), .text(drone.droneId)])
        }
        #expect(try await assign(request("waiter", queuedAt: 1)).droneId == "d-1")
        #expect(try await assign(request("late", queuedAt: 2)).position == 1, "the line is d-1's no more: a newcomer waits")
    }

    @Test("without wait, no free drone is RESOURCE_EXHAUSTED; a package no drone can carry is INVALID_ARGUMENT")
    func withoutWaiting() async throws {
        try await register("d-1")
        _ = try await assign(request("busy"))
        var impatient = request("impatient")
        impatient.wait = false
        #expect(await code { try await assign(impatient) } == .resourceExhausted)
        #expect(await code { try await assign(request("too-heavy", weight: 50)) } == .invalidArgument)
    }

    @Test("an event about an earlier attempt does not free the drone of a fresh one; a lost drone is out of service until it registers again")
    func eventsAndLostDrones() async throws {
        try await register("d-1")
        #expect(try await assign(request("x")).droneId == "d-1")
        let before = Timestamp.now
        _ = try await release("x", reason: "saga failed")
        #expect(try await assign(request("x", key: "saga-x:retry-1")).droneId == "d-1")
        var late = DeliveryV1.DeliveryEvent()
        late.deliveryId = "x"
        late.stage = .failed
        late.eventTime = before  // the first attempt's FAILED event, handled late
        let lateMessage = try message(late)
        #expect(await logic.handleDeliveryEvent(lateMessage) == .acknowledge)
        var get = DroneSchedulerV1.GetAssignmentRequest()
        get.deliveryId = "x"
        #expect(try await logic.getAssignment(get, context: context).state == .active)

        var lost = DeliveryV1.DeliveryEvent()
        lost.deliveryId = "x"
        lost.stage = .failed
        lost.eventTime = .now
        lost.droneLost = true
        let lostMessage = try message(lost)
        #expect(await logic.handleDeliveryEvent(lostMessage) == .acknowledge)
        #expect(try await logic.getAssignment(get, context: context).state == .released)
        let fleet = try await logic.getFleetStatus(includeDrones(), context: context).drones
        #expect(fleet.first?.status == .offline && fleet.first?.currentDeliveryId == "")
        #expect(try await assign(request("y")).waiting, "an offline drone is not assigned")
        try await register("d-1")  // it reports again
        #expect(try await assign(request("y")).droneId == "d-1")
    }

    func includeDrones() -> DroneSchedulerV1.GetFleetStatusRequest {
        var request = DroneSchedulerV1.GetFleetStatusRequest()
        request.includeDrones = true
        return request
    }

    func message(_ event: DeliveryV1.DeliveryEvent) throws -> ReceivedMessage {
        ReceivedMessage(queue: "q", sequence: 1, id: event.deliveryId, key: event.deliveryId, headers: [:], payload: try event.serializedBytes(),
                        deliveryCount: 1, enqueueTime: 0)
    }
}
