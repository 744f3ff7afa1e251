import Foundation
import DroneDeliveryAPI
import Logging
import ProtobufKit
import RPC
import ServiceKit
import Synchronization

/// The drone telemetry simulator: a fleet of simulated drones. It registers the fleet with Drone
/// Scheduler, accepts flight plans (FlightControlService), flies each assigned drone to the pickup
/// and then the drop-off, and reports positions to Delivery every tick.
public final class DroneSimulator: TelemetryV1.FlightControlService.Handler {
    public struct Settings: Sendable {
        /// Real seconds between two position reports.
        public var tick: Duration = .milliseconds(1000)
        /// Simulated seconds per real second (10 flies a 3 km route in about 20 s).
        public var timeScale = 10.0
        /// How long a replica owns its drones without renewing (each tick renews). A killed
        /// replica's flights continue on another one after this, plus one tick. Nil: five ticks,
        /// at least 3 s, well inside Delivery's flight-silence limit.
        public var ownershipLease: Duration?
        public init() {}

        var lease: Duration { ownershipLease ?? max(.seconds(3), tick * 5) }
    }

    let store: any FlightStore
    let delivery: DeliveryV1.DeliveryService.Client
    let settings: Settings
    let logger: Logger
    /// This replica's name in the store's ownership tables: every drone is flown by one replica
    /// at a time (FlightStore.claimDrones). Unique per running simulator.
    public let replicaID: String
    /// - Parameter replicaID: the process's `--replica-id` in a service; a random one by default
    ///   (several simulators in one test process).
    public init(store: any FlightStore, delivery: RPCClient, settings: Settings = Settings(), replicaID: String = makeID("sim"),
                logger: Logger = Logger(label: "fabrikam.simulator")) {
        self.store = store
        self.replicaID = replicaID
        self.delivery = DeliveryV1.DeliveryService.Client(delivery)
        self.settings = settings
        self.logger = logger
    }

    /// A fleet of `count` drones around `base`, on a ring of 1.5 km (created once; kept after).
    public func createFleet(count: Int, base: CommonV1.Location) async throws -> [SimulatedDrone] {
        let existing = try await store.drones()
        if existing.count >= count { return existing }
        var drones = existing
        let known = Set(existing.map(\.id))
        for index in 0..<count {
            let id = String(format: "drone-%03d", index + 1)
            if known.contains(id) { continue }
            let angle = Double(index) / Double(max(count, 1)) * 2 * .pi
            let home = CommonV1.Location(latitude: base.latitude + 0.0135 * sin(angle), longitude: base.longitude + 0.02 * cos(angle), altitude: 0)
            let size: CommonV1.PackageSize = [.small, .medium, .large][index % 3]
            drones.append(SimulatedDrone(id: id, position: home, home: home, speed: 15, capacityKg: [2.0, 5.0, 10.0][index % 3], maxPackageSize: size))
        }
        try await store.saveDrones(drones)
        return drones
    }

    /// Registers every drone with Drone Scheduler, retrying until it answers.
    public func registerFleet(with scheduler: DroneSchedulerV1.DroneSchedulerService.Client) async {
        while !Task.isCancelled {
            do {
                for drone in try await store.drones() {
                    var request = DroneSchedulerV1.RegisterDroneRequest()
                    var registered = DroneSchedulerV1.Drone()
                    registered.droneId = drone.id
                    registered.capacityKg = drone.capacityKg
                    registered.maxPackageSize = drone.maxPackageSize
                    registered.homeLocation = drone.home
                    registered.position = drone.position
                    registered.cruiseSpeedMps = drone.speed * settings.timeScale
                    registered.status = .available
                    request.drone = registered
                    _ = try await scheduler.registerDrone(request, options: .idempotent())
                }
                logger.info("fleet registered with drone scheduler")
                return
            } catch {
                logger.info("drone scheduler not reachable yet; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    // MARK: FlightControlService

    public func assignFlight(_ request: TelemetryV1.AssignFlightRequest, context: ServerContext) async throws -> TelemetryV1.AssignFlightResponse {
        guard let plan = request.plan else { throw RPCError(.invalidArgument, "plan is required") }
        // delivery_id, drone_id and both locations (on Earth) are required (field rules).
        guard let drone = try await store.drone(id: plan.droneId) else {
            throw RPCError(.notFound, "drone \(plan.droneId) is not in the simulated fleet")
        }
        // No lock against the tick: every write is conditional in the store (one flight per
        // drone; a replaced flight only as it was read; a tick saves a flight only as it read it),
        // as it must be anyway across replicas. A replacement that finds the flight moved on
        // reads again. (An in-process lock held across the tick, its report to Delivery
        // included, made every AssignFlight wait for it, and read the whole fleet and every
        // flight: Workflow's ScheduleDelivery took 670 to 740 ms on the scaled system and 80 to
        // 90 ms embedded, then 54 and 8 ms without it; make bench-scaled, 2026-12-05.)
        for _ in 0..<8 {
            // One drone, one delivery: a plan for a drone busy with another delivery is refused
            // until that flight ends or is aborted (a drone released while its abort is on the way).
            if let other = try await store.flight(droneID: plan.droneId), other.plan.deliveryId != plan.deliveryId {
                throw RPCError(.aborted, "drone \(plan.droneId) is flying delivery \(other.plan.deliveryId); it takes no second flight")
            }
            var created = true
            var phase = TelemetryV1.FlightPhase.headedToPickup
            let existing = try await store.flight(deliveryID: plan.deliveryId)
            if let existing {
                if existing.plan == plan { created = false; phase = existing.phase }
                // A new plan after pickup keeps the package on board.
                else if existing.phase == .headedToDropoff || existing.phase == .atDropoff { phase = .headedToDropoff }
            }
            if created {
                do {
                    // Either one is refused when another call changed the flight since it was
                    // read (a tick, an abort, the same plan asked twice at once): read again.
                    if let existing {
                        guard try await store.replaceFlight(existing, with: Flight(plan: plan, phase: phase)) else { continue }
                    } else {
                        guard try await store.createFlight(Flight(plan: plan, phase: phase)) else { continue }
                    }
                } catch {
                    // Another call gave the drone a flight after the check above: the store's
                    // one-flight-per-drone index refused this one.
                    if let other = try await store.flight(droneID: plan.droneId), other.plan.deliveryId != plan.deliveryId {
                        throw RPCError(.aborted, "drone \(plan.droneId) is flying delivery \(other.plan.deliveryId); it takes no second flight")
                    }
                    throw error
                }
            }
            var response = TelemetryV1.AssignFlightResponse()
            response.plan = plan
            response.created = created
            let speed = drone.speed * settings.timeScale
            let now = Timestamp.now.secondsSince1970
            let toPickup = phase == .headedToPickup ? drone.position.distance(to: plan.pickupLocation!) / speed : 0
            let toDropoff = (phase == .headedToPickup ? plan.pickupLocation! : drone.position).distance(to: plan.dropoffLocation!) / speed
            response.pickupEta = Timestamp(secondsSince1970: now + toPickup)
            response.dropoffEta = Timestamp(secondsSince1970: now + toPickup + toDropoff)
            return response
        }
        throw RPCError(.aborted, "the flight of delivery \(plan.deliveryId) changed on every attempt to replace it; ask again")
    }

    public func abortFlight(_ request: TelemetryV1.AbortFlightRequest, context: ServerContext) async throws -> TelemetryV1.AbortFlightResponse {
        var response = TelemetryV1.AbortFlightResponse()
        response.aborted = try await store.removeFlight(deliveryID: request.deliveryId)
        return response
    }

    // MARK: Flying

    /// Moves every flying drone one tick and reports, until cancelled.
    public func fly() async {
        while !Task.isCancelled {
            do {
                try await tick()
            } catch {
                logger.warning("tick failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: settings.tick)
        }
    }

    /// One tick: claim this replica's drones, advance their flights, save (fenced by ownership),
    /// then report what was saved to Delivery. A flight that reached the drop-off ends only once
    /// Delivery has its final position. Saving before reporting means a replica that lost a drone
    /// (it stalled past its lease, another replica took over) reports nothing for it.
    func tick() async throws {
        let owned = try await store.claimDrones(holder: replicaID, lease: settings.lease)
        let flights = try await store.flights().filter { owned.contains($0.plan.droneId) }
        if flights.isEmpty { return }
        var drones = Dictionary(uniqueKeysWithValues: try await store.drones().map { ($0.id, $0) })
        let seconds = Double(settings.tick.components.seconds) + Double(settings.tick.components.attoseconds) / 1e18
        let now = Timestamp.now
        var moved: [Flight] = []
        var positions: [TelemetryV1.DronePosition] = []
        for var flight in flights {
            guard var drone = drones[flight.plan.droneId], let pickup = flight.plan.pickupLocation, let dropoff = flight.plan.dropoffLocation else { continue }
            let step = drone.speed * settings.timeScale * seconds
            switch flight.phase {
            case .headedToPickup:
                drone.position = Self.advance(drone.position, toward: pickup, by: step)
                if drone.position.distance(to: pickup) < 1 { flight.phase = .atPickup }
            case .atPickup:
                flight.phase = .headedToDropoff
            case .headedToDropoff:
                drone.position = Self.advance(drone.position, toward: dropoff, by: step)
                if drone.position.distance(to: dropoff) < 1 { flight.phase = .atDropoff }
            default: break
            }
            flight.sequence += 1
            drones[drone.id] = drone
            var position = TelemetryV1.DronePosition()
            position.droneId = drone.id
            position.deliveryId = flight.plan.deliveryId
            position.location = drone.position
            position.time = now
            position.phase = flight.phase
            position.groundSpeedMps = drone.speed * settings.timeScale
            position.sequence = flight.sequence
            position.flightId = flight.plan.flightId
            positions.append(position)
            moved.append(flight)
        }
        let flownDrones = Set(moved.map(\.plan.droneId))
        let saved = try await store.saveTick(drones: drones.values.filter { flownDrones.contains($0.id) }, flights: moved, holder: replicaID)
        positions.removeAll { !saved.contains($0.deliveryId) }
        if positions.isEmpty { return }
        do {
            var report = DeliveryV1.ReportDronePositionsRequest()
            report.positions = positions
            _ = try await delivery.reportDronePositions(options: CallOptions(timeout: .seconds(5))) { writer in try await writer.write(report) }
        } catch {
            // Telemetry is a stream of current positions: the next tick reports again, and a
            // flight at its drop-off stays open until Delivery has heard it.
            logger.info("delivery did not take positions", metadata: ["error": "\(error)"])
            return
        }
        try await store.finishFlights(moved.filter { $0.phase == .atDropoff && saved.contains($0.plan.deliveryId) }, holder: replicaID)
    }

    static func advance(_ from: CommonV1.Location, toward target: CommonV1.Location, by meters: Double) -> CommonV1.Location {
        let distance = from.distance(to: target)
        if distance <= meters || distance == 0 { return target }
        return from.interpolated(to: target, fraction: meters / distance)
    }
}
