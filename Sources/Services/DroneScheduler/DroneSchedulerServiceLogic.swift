import DroneDeliveryAPI
import Foundation
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Storage

/// Drone Scheduler: owns the fleet and its assignments. Assigns the nearest available drone that
/// can carry the package (idempotent per delivery id, never one drone twice), releases drones
/// when their delivery ends (it follows Delivery's events), and computes utilization from the
/// stored assignments.
public struct DroneSchedulerServiceLogic: DroneSchedulerV1.DroneSchedulerService.Handler {
    /// The release reason of a delivery that reached Completed (its route counts as flown).
    public static let completedReason = "completed"
    let store: any DroneStore
    let logger: Logger

    public init(store: any DroneStore, logger: Logger = Logger(label: "fabrikam.dronescheduler")) {
        self.store = store
        self.logger = logger
    }

    public func assignDrone(_ request: DroneSchedulerV1.AssignDroneRequest, context: ServerContext) async throws -> DroneSchedulerV1.AssignDroneResponse {
        // delivery_id, both locations on Earth, package_info with a defined size and a positive
        // weight: field rules (dronescheduler.proto, common.proto).
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
        // owner_id, year in 1970...9999, month in 1...12: field rules.
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
        // drone_id, a positive capacity and speed, a defined package size, a home on Earth: field rules.
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
    /// must not free the drone of the fresh one. A store failure: see `Disposition.afterStoreFailure`
    /// (an outage waits, uncounted; a refusal is retried, then dead-lettered with the reason).
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
            logger.warning(isStoreUnavailable(error) ? "drone store unavailable: the release waits, uncounted" : "drone store refused the release",
                           metadata: ["delivery": "\(event.deliveryId)", "attempt": "\(message.deliveryCount)", "error": "\(error)"])
            return Disposition.afterStoreFailure(error, of: message)
        }
    }
}
