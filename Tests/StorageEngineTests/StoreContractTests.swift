import Accounts
import Delivery
import DeliveryHistory
import DroneDeliveryAPI
import DroneScheduler
import DroneSimulator
import Foundation
import Packages
import ProtobufKit
import ServiceKit
import Storage
import Supervisor
import Testing
import TestSupport
import Workflow

/// Each store's behaviour, the same test on every engine (`TestEngine.available`).
@Suite("Store contracts, on SQLite and PostgreSQL")
struct StoreContractTests {
    static func package(_ id: String, owner: String, weight: Double, size: CommonV1.PackageSize = .small) -> PackageV1.Package {
        var package = PackageV1.Package()
        package.packageId = id
        package.ownerId = owner
        package.weight = weight
        package.size = size
        package.createTime = Timestamp(seconds: 1_000)
        return package
    }

    @Test("PackageStore: put creates then replaces (keeping the create time), refuses another owner's id, updates, deletes, sums", arguments: TestEngine.available)
    func packages(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLPackageStore($0) }
            guard case .stored(_, created: true) = try await store.put(Self.package("p1", owner: "a", weight: 1.5)) else { Issue.record("not created"); return }
            var changed = Self.package("p1", owner: "a", weight: 2.5)
            changed.createTime = Timestamp(seconds: 9_999)
            guard case .stored(let replaced, created: false) = try await store.put(changed) else { Issue.record("not replaced"); return }
            #expect(replaced.createTime == Timestamp(seconds: 1_000))
            guard case .ownedByAnother = try await store.put(Self.package("p1", owner: "b", weight: 9)) else { Issue.record("another owner's put went through"); return }
            #expect(try await store.package(id: "p1")?.weight == 2.5)
            _ = try await store.put(Self.package("p2", owner: "a", weight: 4, size: .large))
            _ = try await store.put(Self.package("p3", owner: "a", weight: 0.25))
            let updated = try await store.update(id: "p3") { $0.weight += 1 }
            #expect(updated?.weight == 1.25)
            #expect(try await store.update(id: "missing") { $0.weight = 1 } == nil)
            let summary = try await store.summary(ownerID: "a")
            #expect(summary.packageCount == 3)
            #expect(summary.totalWeight == 7.75)
            #expect(summary.sizeCounts.map(\.count) == [2, 1])
            #expect(try await store.delete(id: "p2"))
            #expect(try await !store.delete(id: "p2"))
            #expect(try await store.package(id: "p2") == nil)
        }
    }

    @Test("AccountStore: accounts insert once, users are per account and keep their create time, keys are found by hash and revoked once", arguments: TestEngine.available)
    func accounts(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLAccountStore($0) }
            var account = AccountsV1.Account()
            account.accountId = "acct-1"
            account.displayName = "first"
            #expect(try await store.insertAccount(account).created)
            var other = account
            other.displayName = "second"
            let again = try await store.insertAccount(other)
            #expect(!again.created)
            #expect(again.account.displayName == "first", "the stored account is returned, not overwritten")

            var key = AccountsV1.ApiKey()
            key.keyId = "k1"
            key.accountId = "acct-2"
            var second = AccountsV1.Account()
            second.accountId = "acct-2"
            #expect(try await store.registerAccount(second, firstKey: key, secretHash: "h1").created)
            #expect(try await !store.registerAccount(second, firstKey: key, secretHash: "h1").created)
            #expect(try await store.key(secretHash: "h1")?.keyId == "k1")

            var user = AccountsV1.User()
            user.accountId = "acct-1"
            user.userId = "u1"
            user.displayName = "v1"
            user.createTime = Timestamp(seconds: 5)
            #expect(try await store.putUser(user).created)
            user.displayName = "v2"
            user.createTime = Timestamp(seconds: 6)
            let replaced = try await store.putUser(user)
            #expect(!replaced.created)
            #expect(replaced.user.createTime == Timestamp(seconds: 5))
            #expect(try await store.user(accountID: "acct-1", userID: "u1")?.displayName == "v2")
            #expect(try await store.user(accountID: "acct-2", userID: "u1") == nil)

            let revoked = try await store.revokeKey(accountID: "acct-2", keyID: "k1", at: Timestamp(seconds: 7))
            #expect(revoked?.status == .revoked)
            let twice = try await store.revokeKey(accountID: "acct-2", keyID: "k1", at: Timestamp(seconds: 8))
            #expect(twice?.revokeTime == Timestamp(seconds: 7))
            #expect(try await store.revokeKey(accountID: "acct-1", keyID: "k1", at: Timestamp(seconds: 8)) == nil, "another account's key")
        }
    }

    @Test("HistoryStore: an event id is appended once; events by delivery in order, by owner filtered by time and stage", arguments: TestEngine.available)
    func history(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLHistoryStore($0) }
            func event(_ id: String, delivery: String, sequence: Int64, stage: CommonV1.DeliveryStage, time: Int64) -> DeliveryHistoryV1.DeliveryHistoryEvent {
                var event = DeliveryHistoryV1.DeliveryHistoryEvent()
                event.eventId = id
                event.deliveryId = delivery
                event.sequence = sequence
                event.stage = stage
                event.eventTime = Timestamp(seconds: time)
                var owner = CommonV1.Owner()
                owner.accountId = "acct"
                event.owner = owner
                return event
            }
            #expect(try await store.append(event("e2", delivery: "d1", sequence: 2, stage: .headedToPickup, time: 20)).created)
            #expect(try await store.append(event("e1", delivery: "d1", sequence: 1, stage: .created, time: 10)).created)
            var duplicate = event("e1", delivery: "d1", sequence: 1, stage: .created, time: 10)
            duplicate.droneId = "changed"
            let again = try await store.append(duplicate)
            #expect(!again.created)
            #expect(again.event.droneId == "", "the first one stays")
            _ = try await store.append(event("e3", delivery: "d2", sequence: 1, stage: .created, time: 30))
            #expect(try await store.events(deliveryID: "d1", offset: 0, limit: 10).map(\.eventId) == ["e1", "e2"])
            #expect(try await store.events(deliveryID: "d1", offset: 1, limit: 10).map(\.eventId) == ["e2"])
            #expect(try await store.owner(deliveryID: "d2") == "acct")
            #expect(try await store.owner(deliveryID: "none") == nil)
            #expect(try await store.events(ownerID: "acct", start: 15, end: nil, stages: [], offset: 0, limit: 10).map(\.eventId) == ["e2", "e3"])
            #expect(try await store.events(ownerID: "acct", start: nil, end: 25, stages: [.created], offset: 0, limit: 10).map(\.eventId) == ["e1"])
        }
    }

    @Test("DeliveryStore: a change commits the record, numbered tracking events and outbox events together; an operation id applies once", arguments: TestEngine.available)
    func deliveries(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLDeliveryStore($0) }
            let created = try await store.update(id: "d1", operationID: "op-1", trace: nil) { current in
                #expect(current == nil)
                var delivery = DeliveryV1.Delivery()
                delivery.deliveryId = "d1"
                var owner = CommonV1.Owner()
                owner.accountId = "acct"
                owner.userId = "u"
                delivery.owner = owner
                delivery.createTime = Timestamp(seconds: 100)
                var status = DeliveryV1.DeliveryStatus()
                status.stage = .created
                status.updateTime = Timestamp(seconds: 100)
                var change = DeliveryChange(record: DeliveryRecord(delivery: delivery, status: status))
                var tracking = DeliveryV1.DeliveryTrackingEvent()
                tracking.stage = .created
                change.tracking = [tracking, tracking]
                change.domainEvents = [(index: 1, reason: "created")]
                return change
            }
            #expect(created.tracking.map(\.sequence) == [1, 2])
            #expect(created.record?.lastSequence == 2)
            let repeated = try await store.update(id: "d1", operationID: "op-1", trace: nil) { _ in
                Issue.record("an applied operation ran again")
                return nil
            }
            #expect(repeated.tracking.isEmpty)
            #expect(try await store.trackingEvents(deliveryID: "d1", after: 1).map(\.sequence) == [2])
            let outbox = try await store.outbox(limit: 10)
            #expect(outbox.map(\.id) == ["d1-2"])
            try await store.removeFromOutbox(ids: outbox.map(\.id))
            #expect(try await store.outbox(limit: 10).isEmpty)
            #expect(try await store.list(ownerID: "acct", userID: "", stages: [.created], offset: 0, limit: 10).map(\.deliveryId) == ["d1"])
            #expect(try await store.list(ownerID: "acct", userID: "", stages: [.completed], offset: 0, limit: 10).isEmpty)
            #expect(try await store.silentFlights(before: 150, limit: 10) == ["d1"])
            #expect(try await store.silentFlights(before: 50, limit: 10).isEmpty)

            _ = try await store.update(id: "d1", operationID: nil, trace: nil) { current in
                var change = DeliveryChange(record: current!)
                change.record.status.stage = .cancelled
                change.flightToAbort = "cancelled"
                return change
            }
            #expect(try await store.record(id: "d1")?.delivery.stage == .cancelled)
            #expect(try await store.flightAborts(dueAt: 0, limit: 10).map(\.deliveryID) == ["d1"])
            try await store.postponeFlightAbort(deliveryID: "d1", next: 500)
            #expect(try await store.flightAborts(dueAt: 100, limit: 10).isEmpty)
            #expect(try await store.flightAbort(deliveryID: "d1")?.attempts == 1)
            try await store.finishFlightAbort(deliveryID: "d1")
            #expect(try await store.flightAbort(deliveryID: "d1") == nil)
            try await store.addNotification(id: "n1", deliveryID: "d1", email: "a@b", sms: "")
            #expect(try await store.countsByStage()[Int64(CommonV1.DeliveryStage.cancelled.rawValue)] == 1)
        }
    }

    static func drone(_ id: String, at latitude: Double) -> DroneSchedulerV1.Drone {
        var drone = DroneSchedulerV1.Drone()
        drone.droneId = id
        drone.capacityKg = 5
        drone.maxPackageSize = .large
        drone.status = .available
        drone.homeLocation = CommonV1.Location(latitude: latitude, longitude: 0)
        return drone
    }

    static func request(_ deliveryID: String, wait: Bool = false) -> DroneSchedulerV1.AssignDroneRequest {
        var request = DroneSchedulerV1.AssignDroneRequest()
        request.deliveryId = deliveryID
        request.requestKey = "rk-" + deliveryID
        request.pickupLocation = CommonV1.Location(latitude: 0, longitude: 0)
        request.dropoffLocation = CommonV1.Location(latitude: 0.01, longitude: 0)
        var info = CommonV1.PackageInfo()
        info.weight = 1
        info.size = .small
        request.packageInfo = info
        request.wait = wait
        return request
    }

    @Test("DroneStore: the nearest free drone is assigned once, the next delivery waits in line and gets the drone its release frees", arguments: TestEngine.available)
    func drones(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLDroneStore($0) }
            #expect(try await store.upsert(Self.drone("far", at: 1)).created)
            #expect(try await store.upsert(Self.drone("near", at: 0.001)).created)
            let now = Timestamp(seconds: 1_000)
            guard case .assigned(let first, created: true) = try await store.assign(Self.request("d1"), now: now) else { Issue.record("d1 not assigned"); return }
            #expect(first.droneId == "near")
            guard case .assigned(_, created: false) = try await store.assign(Self.request("d1"), now: now) else { Issue.record("d1 assigned twice"); return }
            guard case .assigned(let second, created: true) = try await store.assign(Self.request("d2"), now: now) else { Issue.record("d2 not assigned"); return }
            #expect(second.droneId == "far")
            #expect(try await store.assign(Self.request("d3"), now: now) == .noDroneFree)
            #expect(try await store.assign(Self.request("d3", wait: true), now: now) == .waiting(position: 1))
            #expect(try await store.assign(Self.request("d4", wait: true), now: now) == .waiting(position: 2))
            let released = try await store.release(deliveryID: "d1", reason: DroneSchedulerServiceLogic.completedReason, now: Timestamp(seconds: 1_060),
                                                   position: nil, lost: false, startedBefore: nil)
            #expect(released?.released == true)
            #expect(try await store.assignment(deliveryID: "d3")?.droneId == "near", "the freed drone went to the first in line")
            #expect(try await store.assign(Self.request("d4", wait: true), now: now) == .waiting(position: 1))
            let busy = try await store.drones(status: .assigned, offset: 0, limit: 10).map(\.droneId)
            #expect(busy == ["far", "near"])
            let usage = try await store.utilization(ownerID: "", start: 0, end: 2_000, now: 1_100)
            #expect(usage.seconds == 60 + 100 + 40, "d1 ran 60 s; d2 and d3 run until now")
            #expect(usage.meters > 0)
        }
    }

    @Test("SagaStore: a checkpoint replaces the saga's last one; sagas by delivery and by state", arguments: TestEngine.available)
    func sagas(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLSagaStore($0) }
            func saga(_ id: String, delivery: String, state: WorkflowV1.SagaState, created: Int64) -> SagaRecord {
                var status = WorkflowV1.SagaStatus()
                status.sagaId = id
                status.deliveryId = delivery
                status.state = state
                status.createTime = Timestamp(seconds: created)
                return SagaRecord(status: status, envelope: [1, 2, 3])
            }
            try await store.save(saga("s1", delivery: "d1", state: .running, created: 1))
            var done = saga("s1", delivery: "d1", state: .succeeded, created: 1)
            done.droneID = "drone-1"
            done.reported = true
            try await store.save(done)
            try await store.save(saga("s2", delivery: "d1", state: .running, created: 2))
            try await store.save(saga("s3", delivery: "d2", state: .running, created: 3))
            #expect(try await store.saga(id: "s1") == done)
            #expect(try await store.sagas(deliveryID: "d1").map(\.status.sagaId) == ["s1", "s2"])
            #expect(try await store.sagas(state: .running, offset: 0, limit: 10).map(\.status.sagaId) == ["s2", "s3"])
            #expect(try await store.sagas(state: nil, offset: 1, limit: 1).map(\.status.sagaId) == ["s2"])
            #expect(try await store.countsByState()[Int64(WorkflowV1.SagaState.running.rawValue)] == 2)
        }
    }

    @Test("FailedSagaStore: a saga is recorded once, due while it has compensations to run, listed by state and delivery", arguments: TestEngine.available)
    func failedSagas(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLFailedSagaStore($0) }
            var saga = SupervisorV1.FailedSaga()
            saga.sagaId = "s1"
            saga.deliveryId = "d1"
            saga.state = .pending
            saga.failTime = Timestamp(seconds: 10)
            saga.compensations = [SupervisorV1.Compensation()]
            #expect(try await store.insert(saga).created)
            var changed = saga
            changed.deliveryId = "other"
            let again = try await store.insert(changed)
            #expect(!again.created)
            #expect(again.saga.deliveryId == "d1")
            var resolved = saga
            resolved.sagaId = "s2"
            resolved.compensations = []
            resolved.failTime = Timestamp(seconds: 20)
            _ = try await store.insert(resolved)
            #expect(try await store.due(now: 0, limit: 10).map(\.sagaId) == ["s1"])
            saga.state = .compensating
            try await store.save(saga, nextAttempt: 100)
            #expect(try await store.due(now: 50, limit: 10).isEmpty)
            #expect(try await store.due(now: 100, limit: 10).map(\.sagaId) == ["s1"])
            #expect(try await store.saga(id: "s1")?.state == .compensating)
            #expect(try await store.list(states: [.compensating], deliveryID: "", offset: 0, limit: 10).map(\.sagaId) == ["s1"])
            #expect(try await store.list(states: [], deliveryID: "d1", offset: 0, limit: 10).map(\.sagaId) == ["s1", "s2"])
        }
    }

    @Test("FlightStore: drones are saved and replaced, flights created one per drone; a tick does not bring back a flight aborted meanwhile", arguments: TestEngine.available)
    func flights(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLFlightStore($0) }
            let drone = SimulatedDrone(id: "dr1", position: CommonV1.Location(latitude: 1, longitude: 2, altitude: 3),
                                       home: CommonV1.Location(latitude: 1, longitude: 2), speed: 15, capacityKg: 5, maxPackageSize: .medium)
            try await store.saveDrones([drone])
            var moved = drone
            moved.position.latitude = 1.5
            try await store.saveDrones([moved])
            #expect(try await store.drones() == [moved])
            func flight(_ delivery: String, drone: String) -> Flight {
                var plan = TelemetryV1.FlightPlan()
                plan.deliveryId = delivery
                plan.droneId = drone
                plan.flightId = "f-" + delivery
                return Flight(plan: plan, phase: .headedToPickup, sequence: 1)
            }
            #expect(try await store.createFlight(flight("d1", drone: "dr1")))
            #expect(try await store.createFlight(flight("d2", drone: "dr2")))
            await #expect(throws: (any Error).self, "one flight per drone") { try await store.createFlight(flight("d3", drone: "dr1")) }
            #expect(try await store.removeFlight(deliveryID: "d2"))
            var ticked = flight("d1", drone: "dr1")
            ticked.sequence = 2  // the tick after the one that saved sequence 1
            #expect(try await store.claimDrones(holder: "sim-a", lease: .seconds(60)) == ["dr1"])
            let saved = try await store.saveTick(drones: [drone], flights: [ticked, flight("d2", drone: "dr2")], holder: "sim-a")
            #expect(saved == ["d1"])
            #expect(try await store.flights().map(\.plan.deliveryId) == ["d1"], "d2 was removed during the tick and stays removed")
            #expect(try await store.flight(deliveryID: "d1")?.sequence == 2)
            try await store.finishFlights([ticked], holder: "sim-a")
            #expect(try await store.flights().isEmpty)
        }
    }

    @Test("FlightStore: a flight is created once and replaced only as it was read; a tick neither saves over nor ends a flight planned again since", arguments: TestEngine.available)
    func flightReplacedAsRead(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLFlightStore($0) }
            var plan = TelemetryV1.FlightPlan()
            plan.deliveryId = "d1"
            plan.droneId = "dr1"
            plan.flightId = "f-1"
            let first = Flight(plan: plan, phase: .headedToPickup, sequence: 0)
            #expect(try await store.createFlight(first))
            #expect(try await store.flight(droneID: "dr1") == first)
            #expect(try await store.flight(droneID: "dr2") == nil)

            // A tick moves the flight on: a replacement made from what was read before it is refused.
            #expect(try await store.claimDrones(holder: "sim-a", lease: .seconds(60)).isEmpty, "no drone in the fleet yet")
            try await store.saveDrones([SimulatedDrone(id: "dr1", position: CommonV1.Location(), home: CommonV1.Location(), speed: 15,
                                                       capacityKg: 5, maxPackageSize: .medium)])
            #expect(try await store.claimDrones(holder: "sim-a", lease: .seconds(60)) == ["dr1"])
            var ticked = first
            ticked.phase = .atDropoff
            ticked.sequence = 1
            #expect(try await store.saveTick(drones: [], flights: [ticked], holder: "sim-a") == ["d1"])
            var replanned = plan
            replanned.flightId = "f-2"
            #expect(try await store.replaceFlight(first, with: Flight(plan: replanned, phase: .headedToDropoff)) == false)
            #expect(try await store.flight(deliveryID: "d1") == ticked)

            // Aborted and planned again with the same plan after the tick saved it: the tick's
            // finishing (its flight at sequence 1) leaves the new one (sequence 0) flying.
            #expect(try await store.removeFlight(deliveryID: "d1"))
            #expect(try await store.createFlight(first))
            try await store.finishFlights([ticked], holder: "sim-a")
            #expect(try await store.flight(deliveryID: "d1") == first)
            // Planned again while a tick that read the old flight (sequence 1) was moving it:
            // that tick's save (sequence 2) does not land on the new one.
            var late = ticked
            late.sequence = 2
            #expect(try await store.saveTick(drones: [], flights: [late], holder: "sim-a").isEmpty)
            #expect(try await store.flight(deliveryID: "d1") == first)
            // A second create of a flight on file (the same plan asked twice at once) writes nothing.
            var moved = first
            moved.sequence = 1
            moved.phase = .atPickup
            #expect(try await store.saveTick(drones: [], flights: [moved], holder: "sim-a") == ["d1"])
            #expect(try await store.createFlight(first) == false)
            #expect(try await store.flight(deliveryID: "d1") == moved)
            #expect(try await store.replaceFlight(moved, with: Flight(plan: replanned, phase: .headedToPickup)))
            #expect(try await store.flight(droneID: "dr1")?.plan.flightId == "f-2")
        }
    }
}
