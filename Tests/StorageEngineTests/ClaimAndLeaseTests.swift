import DroneDeliveryAPI
import Foundation
import ProtobufKit
import ServiceKit
import Storage
import Supervisor
import Synchronization
import Testing
import TestSupport

/// Work that exactly one replica may do: the Supervisor's claims on due sagas, and the leases of
/// singleton loops. Two database handles play two replicas, with many tasks on each at once.
@Suite("Claims and leases: exactly one replica does the work, on SQLite and PostgreSQL")
struct ClaimAndLeaseTests {
    static func saga(_ id: String) -> SupervisorV1.FailedSaga {
        var saga = SupervisorV1.FailedSaga()
        saga.sagaId = id
        saga.deliveryId = "dlv-\(id)"
        saga.state = .pending
        saga.failTime = Timestamp(seconds: 10)
        var compensation = SupervisorV1.Compensation()
        compensation.kind = .markDeliveryFailed
        compensation.state = .pending
        saga.compensations = [compensation]
        return saga
    }

    /// A time after every saga recorded here is due (they are due at 0 once recorded).
    static let now = 1_000.0

    @Test("many claimers on two handles at once: each due saga is claimed by exactly one, and only its claimer can save it", arguments: TestEngine.available)
    func concurrentClaims(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await place.open({ try SQLFailedSagaStore($0) }, poolSize: 4)
            let second = try await place.open({ try SQLFailedSagaStore($0) }, poolSize: 4)
            let ids = (0..<40).map { "s\($0)" }
            for id in ids { _ = try await first.insert(Self.saga(id)) }
            // 16 claimers, each a holder of its own, claiming small batches for several rounds:
            // room for 480 claims, so a saga claimed twice would show.
            let claims = try await withThrowingTaskGroup(of: [(holder: String, sagaID: String)].self) { group in
                for claimer in 0..<16 {
                    let store = claimer % 2 == 0 ? first : second
                    group.addTask {
                        let holder = "claimer-\(claimer)"
                        var mine: [(holder: String, sagaID: String)] = []
                        for _ in 0..<10 {
                            mine += try await store.claimDue(now: Self.now, limit: 3, holder: holder, for: .seconds(120)).map { (holder, $0.sagaId) }
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claims.map(\.sagaID).sorted() == ids.sorted(), "every due saga claimed exactly once")
            #expect(try await first.claimDue(now: Self.now, limit: 100, holder: "late", for: .seconds(120)).isEmpty, "all are held")
            // The claim is the claimer's: another holder's save is refused; the claimer's goes through.
            for claim in claims.prefix(6) {
                var saga = try #require(try await first.saga(id: claim.sagaID))
                saga.state = .compensated
                await #expect(throws: ClaimLost.self) { try await second.save(saga, nextAttempt: nil, holder: "claimer-none") }
                try await second.save(saga, nextAttempt: nil, holder: claim.holder)
                #expect(try await first.saga(id: claim.sagaID)?.state == .compensated)
            }
        }
    }

    @Test("a running claim keeps the saga from others (one saga claimed by name too); an expired one is taken over, and the stale holder's save is refused and changes nothing",
          arguments: TestEngine.available)
    func expiredClaimTakenOver(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let replicaA = try await place.open { try SQLFailedSagaStore($0) }
            let replicaB = try await place.open { try SQLFailedSagaStore($0) }
            _ = try await replicaA.insert(Self.saga("held"))
            _ = try await replicaA.insert(Self.saga("short"))

            // A long claim: B finds nothing to claim, and cannot claim the saga by name, nor can A again.
            #expect(try await replicaA.claim(id: "held", holder: "a", for: .seconds(120)) == .claimed(Self.saga("held")))
            #expect(try await replicaB.claim(id: "held", holder: "b", for: .seconds(120)) == .heldBy("a"))
            #expect(try await replicaA.claim(id: "held", holder: "a", for: .seconds(120)) == .heldBy("a"), "a running round of A's own is not run twice either")
            #expect(try await replicaB.claim(id: "missing", holder: "b", for: .seconds(120)) == .notFound)

            // A short claim runs out: B takes the saga over.
            #expect(try await replicaA.claimDue(now: Self.now, limit: 10, holder: "a", for: .milliseconds(200)).map(\.sagaId) == ["short"])
            let takenOver = try await waitUntil {
                try await replicaB.claimDue(now: Self.now, limit: 10, holder: "b", for: .seconds(120)).map(\.sagaId) == ["short"]
            }
            #expect(takenOver, "B took over the expired claim")

            // A comes back from its stall and saves its round: refused, and nothing changed.
            let before = try await replicaA.saga(id: "short")
            var stale = try #require(before)
            stale.state = .compensated
            stale.compensations[0].state = .succeeded
            await #expect(throws: ClaimLost.self) { try await replicaA.save(stale, nextAttempt: nil, holder: "a") }
            #expect(try await replicaB.saga(id: "short") == before)
            #expect(try await replicaB.claimDue(now: Self.now, limit: 10, holder: "c", for: .seconds(120)).isEmpty, "still B's, still due")

            // B's save stands, and ends its claim: the saga is due again at its next attempt, for anyone.
            var round = try #require(before)
            round.state = .compensating
            try await replicaB.save(round, nextAttempt: 500, holder: "b")
            #expect(try await replicaA.saga(id: "short")?.state == .compensating)
            #expect(try await replicaA.claimDue(now: 499, limit: 10, holder: "a", for: .seconds(120)).isEmpty)
            #expect(try await replicaA.claimDue(now: 500, limit: 10, holder: "a", for: .seconds(120)).map(\.sagaId) == ["short"])
        }
    }

    static let leaseSchema = DatabaseSchema(sqlite: [SQLLeaseStore.sqliteTable], postgres: [SQLLeaseStore.postgresTable])

    static func leases(_ place: TestDatabase) async throws -> (store: SQLLeaseStore, database: any SQLDatabase) {
        let location = place.location(poolSize: 4)
        let database = try await onOwnThread { try location.open(Self.leaseSchema) }
        return (SQLLeaseStore(database: database), database)
    }

    @Test("many contenders on two handles at once: exactly one holder gets the lease", arguments: TestEngine.available)
    func oneHolder(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await Self.leases(place).store, second = try await Self.leases(place).store
            let winners = try await withThrowingTaskGroup(of: String?.self) { group in
                for contender in 0..<24 {
                    let store = contender % 2 == 0 ? first : second
                    group.addTask {
                        let holder = "replica-\(contender)"
                        return try await store.acquire("relay", holder: holder, for: .seconds(60)) ? holder : nil
                    }
                }
                return try await group.reduce(into: [String]()) { if let winner = $1 { $0.append(winner) } }
            }
            #expect(winners.count == 1, "\(winners)")
            #expect(try await second.holder(of: "relay") == winners.first)
            #expect(try await first.holder(of: "another") == nil)
        }
    }

    @Test("the holder renews its lease while the other is refused; once it expires the other takes it, and the old holder is refused", arguments: TestEngine.available)
    func renewAndExpire(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let replicaA = try await Self.leases(place).store, replicaB = try await Self.leases(place).store
            #expect(try await replicaA.acquire("relay", holder: "a", for: .seconds(60)))
            #expect(try await replicaA.acquire("relay", holder: "a", for: .seconds(60)), "renewed")
            #expect(try await !replicaB.acquire("relay", holder: "b", for: .seconds(60)))
            // A renews for a moment only, then stops renewing (it died): B gets it.
            #expect(try await replicaA.acquire("relay", holder: "a", for: .milliseconds(200)))
            let taken = try await waitUntil { try await replicaB.acquire("relay", holder: "b", for: .seconds(60)) }
            #expect(taken)
            #expect(try await !replicaA.acquire("relay", holder: "a", for: .seconds(60)), "A's lease is gone")
            #expect(try await replicaA.holder(of: "relay") == "b")
            // Released, it is free at once.
            try await replicaA.release("relay", holder: "a")  // not A's: changes nothing
            #expect(try await replicaA.holder(of: "relay") == "b")
            try await replicaB.release("relay", holder: "b")
            #expect(try await replicaA.acquire("relay", holder: "a", for: .seconds(60)))
        }
    }

    /// What the loops' work did: how many run now, on which replica.
    final class Runs: Sendable {
        private let state = Mutex<(running: [String], most: Int, stopped: Int)>(([], 0, 0))
        func start(_ holder: String) {
            state.withLock { state in
                state.running.append(holder)
                state.most = max(state.most, state.running.count)
            }
        }
        func stop(_ holder: String) {
            state.withLock { state in
                if let index = state.running.firstIndex(of: holder) { state.running.remove(at: index) }
                state.stopped += 1
            }
        }
        var running: [String] { state.withLock { $0.running } }
        var stopped: Int { state.withLock { $0.stopped } }
        /// The most that ever ran at once.
        var most: Int { state.withLock { $0.most } }

        /// Work that runs until it is cancelled.
        func work(_ holder: String) -> @Sendable () async -> Void {
            { [self] in
                start(holder)
                while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(20)) }
                stop(holder)
            }
        }
    }

    /// A replica's lease store that counts the requests it won (the first take, then renewals).
    final class CountingLeases: LeaseStore {
        let store: SQLLeaseStore
        private let granted = Mutex(0)
        init(_ store: SQLLeaseStore) { self.store = store }
        var grants: Int { granted.withLock { $0 } }
        func acquire(_ name: String, holder: String, for ttl: Duration) async throws -> Bool {
            let held = try await store.acquire(name, holder: holder, for: ttl)
            if held { granted.withLock { $0 += 1 } }
            return held
        }
        func release(_ name: String, holder: String) async throws { try await store.release(name, holder: holder) }
        func holder(of name: String) async throws -> String? { try await store.holder(of: name) }
    }

    @Test("LeaderLoop: of two replicas' loops one runs the work and keeps it running while it renews; it stops when its lease is taken; the other runs once the lease is free",
          arguments: TestEngine.available)
    func leaderLoop(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let (storeA, database) = try await Self.leases(place)
            let storeB = try await Self.leases(place).store
            let runs = Runs()
            let counted = ["a": CountingLeases(storeA), "b": CountingLeases(storeB)]
            let loops = [("a", counted["a"]!), ("b", counted["b"]!)].map { holder, store in
                let loop = LeaderLoop(name: "relay", holder: holder, leases: store, ttl: .seconds(5), renewEvery: .milliseconds(50))
                return Task { await loop.run(runs.work(holder)) }
            }
            defer { for loop in loops { loop.cancel() } }
            #expect(try await waitUntil { runs.running.count == 1 })
            let leader = try #require(runs.running.first)
            #expect(try await storeA.holder(of: "relay") == leader)
            // It renews, and the work goes on meanwhile, on the leader alone.
            let leaderLeases = try #require(counted[leader])
            #expect(try await waitUntil { leaderLeases.grants >= 4 }, "renewed three times")
            #expect(runs.running == [leader] && runs.stopped == 0)

            // Another holder takes the lease over (as after the leader stalled past it): the
            // leader's next renewal is refused and its work stops.
            try await database.write { db in
                try db.run("UPDATE leases SET holder = 'usurper', held_until = \(db.dialect.epochNow) + 3600 WHERE name = 'relay'")
            }
            #expect(try await waitUntil { runs.running.isEmpty && runs.stopped == 1 }, "the leader's work stopped: \(runs.running)")
            #expect(try await storeA.holder(of: "relay") == "usurper", "the old leader did not take it back")

            // Free again: one of the two loops takes it and runs the work.
            try await storeA.release("relay", holder: "usurper")
            #expect(try await waitUntil { runs.running.count == 1 })

            // Both stop on cancellation, and the lease is released for whoever comes next.
            for loop in loops { loop.cancel() }
            for loop in loops { await loop.value }
            #expect(runs.running.isEmpty)
            #expect(runs.most == 1, "never two at once")
            #expect(try await storeA.holder(of: "relay") == nil)
        }
    }

    /// A replica's lease store whose requests hang while `stalled` (a database that stopped answering).
    final class StallingLeases: LeaseStore {
        let store: SQLLeaseStore
        let stalled = Atomic(false)
        init(_ store: SQLLeaseStore) { self.store = store }
        func acquire(_ name: String, holder: String, for ttl: Duration) async throws -> Bool {
            while stalled.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(10)) }
            return try await store.acquire(name, holder: holder, for: ttl)
        }
        func release(_ name: String, holder: String) async throws { try await store.release(name, holder: holder) }
        func holder(of name: String) async throws -> String? { try await store.holder(of: name) }
    }

    @Test("LeaderLoop: a renewal that hangs past the lease's ttl stops the work (another replica may hold the lease by then); once answered, the loop leads again",
          arguments: TestEngine.available)
    func stalledRenewal(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let leases = StallingLeases(try await Self.leases(place).store)
            let runs = Runs()
            // A ttl of 2 s: with 300 ms, a renewal delayed on a loaded machine before the stall
            // could already stop and restart the work (the watchdog doing its job, too early for
            // this test), and the count of stops no longer matched.
            let loop = LeaderLoop(name: "relay", holder: "a", leases: leases, ttl: .seconds(2), renewEvery: .milliseconds(50))
            let task = Task { await loop.run(runs.work("a")) }
            defer { task.cancel() }
            #expect(try await waitUntil { runs.running == ["a"] })
            leases.stalled.store(true, ordering: .releasing)
            // While the store hangs, the loop cannot take the lease again: no work running means
            // the watchdog stopped it (at least once; a stop before the stall is not this test's
            // concern).
            #expect(try await waitUntil { runs.running.isEmpty && runs.stopped >= 1 }, "the work stopped while the renewal hung")
            leases.stalled.store(false, ordering: .releasing)
            #expect(try await waitUntil { runs.running == ["a"] }, "nobody took the lease meanwhile: the loop leads again")
            task.cancel()
            await task.value
            #expect(runs.most == 1)
        }
    }
}
