import DroneDeliveryAPI
import DroneSimulator
import Foundation
import ProtobufKit
import Storage
import Testing
import TestSupport

/// Simulator replicas share one fleet through the flight store: each drone is flown by one
/// replica at a time, a dead replica's drones are taken over after its lease, and a replica that
/// lost a drone can no longer save (so it reports nothing) for it.
@Suite("Drone ownership among simulator replicas, on SQLite and PostgreSQL")
struct DroneOwnershipTests {
    static func drone(_ id: String) -> SimulatedDrone {
        let home = CommonV1.Location(latitude: 47.6, longitude: -122.3)
        return SimulatedDrone(id: id, position: home, home: home, speed: 15, capacityKg: 5, maxPackageSize: .medium)
    }

    static func flight(_ delivery: String, drone: String, sequence: Int64 = 1) -> Flight {
        var plan = TelemetryV1.FlightPlan()
        plan.deliveryId = delivery
        plan.droneId = drone
        plan.flightId = "f-" + delivery
        return Flight(plan: plan, phase: .headedToPickup, sequence: sequence)
    }

    @Test("two replicas claiming at once never own one drone both, and settle on fair shares", arguments: TestEngine.available)
    func sharesAreDisjoint(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await place.open({ try SQLFlightStore($0) }, poolSize: 2)
            let second = try await place.open({ try SQLFlightStore($0) }, poolSize: 2)
            try await first.saveDrones((1...6).map { Self.drone("dr\($0)") })
            // Rounds of claims from both replicas at once: what each holds at the same moment never overlaps.
            for _ in 0..<15 {
                async let a = first.claimDrones(holder: "sim-a", lease: .seconds(60))
                async let b = second.claimDrones(holder: "sim-b", lease: .seconds(60))
                let (ownedByA, ownedByB) = try await (a, b)
                #expect(ownedByA.isDisjoint(with: ownedByB), "a drone owned by both: \(ownedByA.intersection(ownedByB).sorted())")
            }
            let a = try await first.claimDrones(holder: "sim-a", lease: .seconds(60))
            let b = try await second.claimDrones(holder: "sim-b", lease: .seconds(60))
            #expect(a.count == 3 && b.count == 3 && a.union(b).count == 6, "fair shares: \(a.sorted()) and \(b.sorted())")
        }
    }

    @Test("a replica that stops renewing loses its drones to another after its lease; its late save changes nothing", arguments: TestEngine.available)
    func takeoverAndFence(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await place.open({ try SQLFlightStore($0) }, poolSize: 2)
            let second = try await place.open({ try SQLFlightStore($0) }, poolSize: 2)
            try await first.saveDrones([Self.drone("dr1"), Self.drone("dr2")])
            #expect(try await first.createFlight(Self.flight("d1", drone: "dr1")))
            // sim-a's lease is long, so that it surely still runs when sim-b asks: a lease of one
            // second once ran out on a loaded machine before sim-b's claim was made, and sim-b
            // rightly took the drones. The lease is then made to run out below, in SQL.
            #expect(try await first.claimDrones(holder: "sim-a", lease: .seconds(60)) == ["dr1", "dr2"])
            // While sim-a's lease runs, sim-b gets nothing (sim-a holds its share and more).
            #expect(try await second.claimDrones(holder: "sim-b", lease: .seconds(30)).isEmpty)
            // sim-a stops renewing, and its lease runs out: its membership and its drones' leases
            // end a second ago on the database's clock, as if that minute had passed.
            let database = try await onOwnThread { try place.location().open(SQLFlightStore.schema) }
            try await database.write { db in
                try db.run("UPDATE simulator_members SET until = \(db.dialect.epochNow) - 1 WHERE holder = 'sim-a'")
                try db.run("UPDATE drone_owners SET until = \(db.dialect.epochNow) - 1 WHERE holder = 'sim-a'")
            }
            // sim-b takes both drones now that the lease has run out.
            var taken: Set<String> = []
            let tookOver = try await waitUntil {
                taken = try await second.claimDrones(holder: "sim-b", lease: .seconds(30))
                return taken == ["dr1", "dr2"]
            }
            #expect(tookOver, "sim-b holds \(taken.sorted())")
            // sim-a wakes up with its tick in hand: its save is refused, so it reports nothing.
            var late = Self.flight("d1", drone: "dr1", sequence: 2)  // the tick after the flight's sequence 1
            late.phase = .atDropoff
            var moved = Self.drone("dr1")
            moved.position.latitude = 10
            #expect(try await first.saveTick(drones: [moved], flights: [late], holder: "sim-a").isEmpty)
            try await first.finishFlights([late], holder: "sim-a")
            #expect(try await first.flight(deliveryID: "d1")?.sequence == 1, "the flight is as sim-b found it")
            #expect(try await first.drones().first { $0.id == "dr1" }?.position.latitude == 47.6)
            // sim-b's own tick saves.
            #expect(try await second.saveTick(drones: [moved], flights: [late], holder: "sim-b") == ["d1"])
            #expect(try await first.flight(deliveryID: "d1")?.sequence == 2)
            // sim-a claims again: sim-b's drones are not expired, so sim-a gets none of them back.
            #expect(try await first.claimDrones(holder: "sim-a", lease: .seconds(1)).isEmpty)
        }
    }
}
