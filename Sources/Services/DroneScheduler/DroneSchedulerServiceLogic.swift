import DroneDeliveryAPI
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit

/// Drone Scheduler: owns the fleet and its assignments. Assigns the nearest available drone that
/// can carry the package (idempotent per delivery id, never one drone twice), releases drones
/// when their delivery ends (it follows Delivery's events), and computes utilization from the
/// stored assignments.
public struct DroneSchedulerServiceLogic: DroneSchedulerV1.DroneSchedulerService.Handler {
    /// The release reason of a delivery that reached Completed (its route counts as flown).
    public static let completedReason = "completed"
    let store: any DroneStore

    public init(store: any DroneStore) { self.store = store }

    public func assignDrone(_ request: DroneSchedulerV1.AssignDroneRequest, context: ServerContext) async throws -> DroneSchedulerV1.AssignDroneResponse {
        var check = Validator()
        check.require(!request.deliveryId.isEmpty, "delivery_id is required")
        check.location(request.pickupLocation, field: "pickup_location")
        check.location(request.dropoffLocation, field: "dropoff_location")
        check.require(request.packageInfo != nil, "package_info is required")
        if let info = request.packageInfo {
            check.require((1...3).contains(info.size.rawValue), "package_info.size must be SMALL, MEDIUM or LARGE")
            check.require(info.weight.isFinite && info.weight > 0, "package_info.weight must be positive, got \(info.weight)")
        }
        try check.check()
        var response = DroneSchedulerV1.AssignDroneResponse()
        switch try await store.assign(request, now: .now) {
        case .assigned(let assignment, let created):
            response.droneId = assignment.droneId
            response.assignment = assignment
            response.created = created
        case .waiting(let position):
            // Not a failure: the caller asks again (a drone is kept for it once one is released).
            response.waiting = true
            response.position = Int32(clamping: position)
        case .noDroneFree:
            // Transient: drones come back when their deliveries end.
            let info = request.packageInfo!
            throw RPCError(.resourceExhausted, "no available drone can carry a \(info.size) package of \(info.weight) kg")
        case .released(let reason):
            throw RPCError(.failedPrecondition, "the drone assignment of delivery \(request.deliveryId) for request \"\(request.requestKey)\" ended (\(reason)); it is not handed out again (a new request assigns afresh)")
        case .expired:
            throw RPCError(.failedPrecondition, "delivery \(request.deliveryId) waited for a drone until \(request.waitUntil.map { "\($0.secondsSince1970)" } ?? "its limit"); none was free")
        case .noneCanCarry:
            let info = request.packageInfo!
            throw RPCError(.invalidArgument, "no drone of the fleet can carry a \(info.size) package of \(info.weight) kg")
        }
        return response
    }

    public func releaseDrone(_ request: DroneSchedulerV1.ReleaseDroneRequest, context: ServerContext) async throws -> DroneSchedulerV1.ReleaseDroneResponse {
        guard !request.deliveryId.isEmpty else { throw RPCError(.invalidArgument, "delivery_id is required") }
        guard let result = try await store.release(deliveryID: request.deliveryId, reason: request.reason.isEmpty ? "released" : request.reason, now: .now,
                                                   position: nil, lost: false, startedBefore: nil) else {
            throw RPCError(.notFound, "delivery \(request.deliveryId) has no drone assignment and does not wait for one")
        }
        var response = DroneSchedulerV1.ReleaseDroneResponse()
        response.released = result.released
        response.assignment = result.assignment
        response.withdrawn = result.withdrawn
        return response
    }

    public func getAssignment(_ request: DroneSchedulerV1.GetAssignmentRequest, context: ServerContext) async throws -> DroneSchedulerV1.Assignment {
        guard let assignment = try await store.assignment(deliveryID: request.deliveryId) else {
            throw RPCError(.notFound, "delivery \(request.deliveryId) has no drone assignment")
        }
        return assignment
    }

    public func getFleetStatus(_ request: DroneSchedulerV1.GetFleetStatusRequest, context: ServerContext) async throws -> DroneSchedulerV1.FleetStatus {
        let drones = try await store.drones(status: nil, offset: 0, limit: Int.max)
        var status = DroneSchedulerV1.FleetStatus()
        status.totalDrones = Int32(drones.count)
        var counts: [Int32: Int32] = [:]
        for drone in drones { counts[drone.status.rawValue, default: 0] += 1 }
        status.statusCounts = counts.keys.sorted().map {
            var count = DroneSchedulerV1.FleetStatus.StatusCount()
            count.status = DroneSchedulerV1.DroneStatus(rawValue: $0)
            count.count = counts[$0]!
            return count
        }
        if request.includeDrones { status.drones = drones }
        status.snapshotTime = .now
        return status
    }

    public func getDroneUtilization(_ request: DroneSchedulerV1.GetDroneUtilizationRequest, context: ServerContext) async throws -> DroneSchedulerV1.DroneUtilization {
        var check = Validator()
        check.require(!request.ownerId.isEmpty, "owner_id is required")
        check.require((1970...9999).contains(request.year), "year must be within 1970..9999, got \(request.year)")
        check.require((1...12).contains(request.month), "month must be within 1..12, got \(request.month)")
        try check.check()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let start = calendar.date(from: DateComponents(year: Int(request.year), month: Int(request.month), day: 1))!
        let end = calendar.date(byAdding: .month, value: 1, to: start)!
        let totals = try await store.utilization(ownerID: request.ownerId, start: start.timeIntervalSince1970, end: end.timeIntervalSince1970,
                                                 now: Date().timeIntervalSince1970)
        var utilization = DroneSchedulerV1.DroneUtilization()
        utilization.ownerId = request.ownerId
        utilization.year = request.year
        utilization.month = request.month
        utilization.traveledMiles = totals.meters / 1609.344
        utilization.assignedHours = totals.seconds / 3600
        return utilization
    }

    public func registerDrone(_ request: DroneSchedulerV1.RegisterDroneRequest, context: ServerContext) async throws -> DroneSchedulerV1.RegisterDroneResponse {
        guard var drone = request.drone else { throw RPCError(.invalidArgument, "drone is required") }
        var check = Validator()
        check.require(!drone.droneId.isEmpty, "drone.drone_id is required")
        check.require(drone.capacityKg.isFinite && drone.capacityKg > 0, "drone.capacity_kg must be positive")
        check.require((1...3).contains(drone.maxPackageSize.rawValue), "drone.max_package_size must be SMALL, MEDIUM or LARGE")
        check.require(drone.cruiseSpeedMps.isFinite && drone.cruiseSpeedMps > 0, "drone.cruise_speed_mps must be positive")
        check.location(drone.homeLocation, field: "drone.home_location")
        try check.check()
        if drone.status == .unspecified || drone.status == .assigned { drone.status = .available }
        if drone.position == nil { drone.position = drone.homeLocation }
        drone.currentDeliveryId = ""
        drone.registerTime = .now
        let stored = try await store.upsert(drone)
        var response = DroneSchedulerV1.RegisterDroneResponse()
        response.drone = stored.drone
        response.created = stored.created
        return response
    }

    public func listDrones(_ request: DroneSchedulerV1.ListDronesRequest, context: ServerContext) async throws -> DroneSchedulerV1.ListDronesResponse {
        let page = try Page(token: request.pageToken, size: request.pageSize)
        let drones = try await store.drones(status: request.status == .unspecified ? nil : request.status, offset: page.offset, limit: page.fetchLimit)
        var response = DroneSchedulerV1.ListDronesResponse()
        (response.drones, response.nextPageToken) = page.cut(drones)
        return response
    }

    /// Follows Delivery's events: a delivery that ended frees its drone (where the drone is now),
    /// or takes it out of service when it stopped reporting. Only an assignment made before the
    /// event ends: a late event about an earlier attempt (a saga that failed and was retried)
    /// must not free the drone of the fresh one.
    public func handleDeliveryEvent(_ message: ReceivedMessage) async -> Disposition {
        guard let event = try? DeliveryV1.DeliveryEvent(serializedBytes: message.payload) else {
            return .deadLetter(reason: "payload is not a fabrikam.dronedelivery.delivery.v1.DeliveryEvent")
        }
        let reason: String
        switch event.stage {
        case .completed: reason = Self.completedReason
        case .cancelled: reason = "cancelled"
        case .failed: reason = "failed"
        default: return .acknowledge
        }
        do {
            _ = try await store.release(deliveryID: event.deliveryId, reason: reason, now: event.eventTime ?? .now, position: event.location,
                                        lost: event.droneLost, startedBefore: event.eventTime ?? .now)
            return .acknowledge
        } catch {
            return .retry(after: .seconds(1))
        }
    }
}
