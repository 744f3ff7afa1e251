import Accounts
import DroneDeliveryAPI
import DroneScheduler
import Foundation
import Packages
import ProtobufKit
import ServiceKit
import Storage
import StoragePostgres
import Testing
import TestSupport

/// Two database handles on one database behave as two replicas of a service would: what one
/// writer relied on with SQLite's single writer holds across handles too.
@Suite("Two handles as two replicas, and transactions, on SQLite and PostgreSQL")
struct ReplicaTests {
    struct Planned: Error {}

    @Test("concurrent read-modify-write updates of one package from two handles serialize: none is lost", arguments: TestEngine.available)
    func noLostUpdates(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await place.open({ try SQLPackageStore($0) }, poolSize: 4)
            let second = try await place.open({ try SQLPackageStore($0) }, poolSize: 4)
            _ = try await first.put(StoreContractTests.package("p", owner: "a", weight: 0))
            let perHandle = 20
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<(2 * perHandle) {
                    let store = index % 2 == 0 ? first : second
                    group.addTask { _ = try await store.update(id: "p") { $0.weight += 1 } }
                }
                try await group.waitForAll()
            }
            #expect(try await first.package(id: "p")?.weight == Double(2 * perHandle))
        }
    }

    @Test("drones assigned at once through two handles: each free drone goes to one delivery, no drone to two", arguments: TestEngine.available)
    func assignmentsFromTwoReplicas(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let first = try await place.open({ try SQLDroneStore($0) }, poolSize: 4)
            let second = try await place.open({ try SQLDroneStore($0) }, poolSize: 4)
            for index in 0..<3 { _ = try await first.upsert(StoreContractTests.drone("dr\(index)", at: Double(index) * 0.01)) }
            let outcomes = try await withThrowingTaskGroup(of: AssignOutcome.self) { group in
                for index in 0..<8 {
                    let store = index % 2 == 0 ? first : second
                    group.addTask { try await store.assign(StoreContractTests.request("d\(index)"), now: Timestamp(seconds: 1_000)) }
                }
                return try await group.reduce(into: [AssignOutcome]()) { $0.append($1) }
            }
            let drones = outcomes.compactMap { outcome -> String? in
                if case .assigned(let assignment, _) = outcome { return assignment.droneId }
                return nil
            }
            #expect(drones.sorted() == ["dr0", "dr1", "dr2"])
            #expect(outcomes.filter { $0 == .noDroneFree }.count == 5)
        }
    }

    @Test("""
        drones claimed by row from two handles while every drone is registered again and releases serve the line: \
        no drone twice, each drone's row names its delivery, no registration lost, the line served before newcomers
        """, arguments: TestEngine.available)
    func claimsFromTwoReplicas(engine: TestEngine) async throws {
        // An assignment that finds the line empty claims its drone by the row, without the fleet
        // key that registrations and releases hold; several rounds, so claims, registrations and
        // releases do meet.
        let fleetSize = 12
        for round in 0..<4 {
            try await withDatabase(engine) { place in
                let stores = [try await place.open({ try SQLDroneStore($0) }, poolSize: 4), try await place.open({ try SQLDroneStore($0) }, poolSize: 4)]
                func drone(_ index: Int, speed: Double) -> DroneSchedulerV1.Drone {
                    var drone = StoreContractTests.drone("dr\(index)", at: Double(index % 3) * 0.001)
                    drone.cruiseSpeedMps = speed
                    return drone
                }
                for index in 0..<fleetSize { _ = try await stores[0].upsert(drone(index, speed: 1)) }
                let now = Timestamp(seconds: 1_000)
                // Twice as many requests as drones, each drone registered again (speed 2), at once.
                let first = try await withThrowingTaskGroup(of: (String, AssignOutcome?).self) { group in
                    for index in 0..<(2 * fleetSize) {
                        group.addTask { ("d\(index)", try await stores[index % 2].assign(StoreContractTests.request("d\(index)", wait: true), now: now)) }
                        if index < fleetSize { group.addTask { _ = try await stores[(index + 1) % 2].upsert(drone(index, speed: 2)); return ("", nil) } }
                    }
                    return try await group.reduce(into: [String: AssignOutcome]()) { if let outcome = $1.1 { $0[$1.0] = outcome } }
                }
                let assigned = first.compactMapValues { outcome -> String? in
                    if case .assigned(let assignment, true) = outcome { return assignment.droneId }
                    return nil
                }
                let waiting = first.filter { if case .waiting = $0.value { true } else { false } }.keys.sorted()
                #expect(Set(assigned.values).count == fleetSize && assigned.count == fleetSize, "round \(round): \(assigned)")
                #expect(waiting.count == fleetSize, "round \(round)")
                var rows = try await stores[0].drones(status: nil, offset: 0, limit: 100)
                #expect(rows.allSatisfy { $0.status == .assigned && assigned[$0.currentDeliveryId] == $0.droneId }, "round \(round): \(rows.map { "\($0.droneId)=\($0.status):\($0.currentDeliveryId)" })")
                #expect(rows.allSatisfy { $0.cruiseSpeedMps == 2 }, "round \(round): a registration was lost")

                // Half the deliveries end while as many newcomers ask: the freed drones go to the
                // line's first, the newcomers join the line behind them.
                let ending = assigned.keys.sorted().prefix(fleetSize / 2)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, deliveryID) in ending.enumerated() {
                        group.addTask { _ = try await stores[index % 2].release(deliveryID: deliveryID, reason: "completed", now: now, position: nil, lost: false, startedBefore: nil) }
                        group.addTask { _ = try await stores[(index + 1) % 2].assign(StoreContractTests.request("late\(index)", wait: true), now: now) }
                    }
                    try await group.waitForAll()
                }
                rows = try await stores[0].drones(status: nil, offset: 0, limit: 100)
                let holders = Set(rows.map(\.currentDeliveryId))
                #expect(rows.allSatisfy { $0.status == .assigned } && holders.count == fleetSize, "round \(round)")
                var servedFromLine: [String] = []
                for deliveryID in waiting where try await stores[1].assignment(deliveryID: deliveryID)?.state == .active { servedFromLine.append(deliveryID) }
                #expect(servedFromLine.count == fleetSize / 2, "round \(round)")
                #expect(holders.allSatisfy { !$0.hasPrefix("late") }, "round \(round): a newcomer went ahead of the line: \(holders.sorted())")
                for deliveryID in holders {
                    let active = try await stores[0].assignment(deliveryID: deliveryID)
                    #expect(active?.state == .active && rows.first { $0.currentDeliveryId == deliveryID }?.droneId == active?.droneId, "round \(round)")
                }
            }
        }
    }

    @Test("a delivery in line that asks again while another replica's release serves it gets the drone, never \"released\"", arguments: TestEngine.postgresOnly)
    func pollMeetsServingRelease(engine: TestEngine) async throws {
        // A waiting delivery's poll reads without the fleet key, so a release on another handle
        // can serve it between two of the poll's statements (a window of one round trip). Many
        // rounds, the release at a different moment of the polling in each.
        try await withDatabase(engine) { place in
            let poller = try await place.open({ try SQLDroneStore($0) }, poolSize: 2)
            let releaser = try await place.open({ try SQLDroneStore($0) }, poolSize: 2)
            _ = try await poller.upsert(StoreContractTests.drone("dr0", at: 0))
            let now = Timestamp(seconds: 1_000)
            for round in 0..<120 {
                _ = try await poller.assign(StoreContractTests.request("busy\(round)"), now: now)
                let waiter = StoreContractTests.request("waiter\(round)", wait: true)
                #expect(try await poller.assign(waiter, now: now) == .waiting(position: 1), "round \(round)")
                async let polls: [AssignOutcome] = {
                    var outcomes: [AssignOutcome] = []
                    while outcomes.count < 400 {
                        let outcome = try await poller.assign(waiter, now: now)
                        outcomes.append(outcome)
                        if case .waiting = outcome { continue }
                        break
                    }
                    return outcomes
                }()
                try await Task.sleep(for: .microseconds(200 * (round % 10)))
                _ = try await releaser.release(deliveryID: "busy\(round)", reason: "completed", now: now, position: nil, lost: false, startedBefore: nil)
                let outcomes = try await polls
                guard case .assigned(let assignment, false)? = outcomes.last, assignment.droneId == "dr0" else {
                    Issue.record("round \(round): the poll ended with \(outcomes.last.map { "\($0)" } ?? "nothing") after \(outcomes.count) polls")
                    break
                }
                _ = try await releaser.release(deliveryID: "waiter\(round)", reason: "completed", now: now, position: nil, lost: false, startedBefore: nil)
            }
        }
    }

    @Test("two Accounts replicas starting at once both seed the demo account and key: both start, one key, and it works", arguments: TestEngine.available)
    func seedingFromTwoReplicas(engine: TestEngine) async throws {
        // make run-scaled found this: the second replica's key insert was a unique violation,
        // fatal at start. Several rounds on fresh databases, so the two inserts do meet.
        for round in 0..<5 {
            try await withDatabase(engine) { place in
                let first = AccountsServiceLogic(store: try await place.open({ try SQLAccountStore($0) }, poolSize: 2))
                let second = AccountsServiceLogic(store: try await place.open({ try SQLAccountStore($0) }, poolSize: 2))
                async let a: Void = { try await first.seedAccount(id: "acct-demo", displayName: "Demo"); try await first.seedAPIKey(accountID: "acct-demo", secret: "fdk_seed") }()
                async let b: Void = { try await second.seedAccount(id: "acct-demo", displayName: "Demo"); try await second.seedAPIKey(accountID: "acct-demo", secret: "fdk_seed") }()
                _ = try await (a, b)
                let store = try await place.open { try SQLAccountStore($0) }
                let key = try await store.key(secretHash: SHA256.hex("fdk_seed"))
                #expect(key?.keyId == "key-demo" && key?.accountId == "acct-demo", "round \(round)")
            }
        }
    }

    @Test("seeding the demo key when key-demo holds another secret fails with a reason", arguments: TestEngine.available)
    func seedingAnotherSecret(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let logic = AccountsServiceLogic(store: try await place.open { try SQLAccountStore($0) })
            try await logic.seedAccount(id: "acct-demo", displayName: "Demo")
            try await logic.seedAPIKey(accountID: "acct-demo", secret: "fdk_one")
            try await logic.seedAPIKey(accountID: "acct-demo", secret: "fdk_one")
            await #expect(throws: ConfigurationError.self) { try await logic.seedAPIKey(accountID: "acct-demo", secret: "fdk_two") }
        }
    }

    @Test("migrations started twice at once apply once", arguments: TestEngine.available)
    func migrationsApplyOnce(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            // The PostgreSQL step sleeps so the two starts overlap for certain.
            let schema = DatabaseSchema(sqlite: ["CREATE TABLE applied (n INTEGER); INSERT INTO applied VALUES (1);"],
                                        postgres: ["CREATE TABLE applied (n BIGINT); INSERT INTO applied VALUES (1); SELECT pg_sleep(0.3);"])
            let first = place.location(), second = place.location()
            async let a = onOwnThread { _ = try first.open(schema) }
            async let b = onOwnThread { _ = try second.open(schema) }
            _ = try await (a, b)
            let database = try await onOwnThread { try place.location().open(schema) }
            #expect(try await database.read { try $0.queryFirst("SELECT COUNT(*) FROM applied")?.int(0) } == 1)
            if engine == .postgres {
                #expect(try await database.read { try $0.query("SELECT version FROM schema_migrations").map { $0.int(0) } } == [1])
            }
        }
    }

    @Test("a transaction that fails leaves nothing, whether the closure throws or a statement fails; the next one works", arguments: TestEngine.available)
    func failedTransactionLeavesNothing(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let schema = DatabaseSchema(sqlite: ["CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"],
                                        postgres: ["CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"])
            let database = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            try await database.write { try $0.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 1]) }
            await #expect(throws: Planned.self) {
                try await database.write { db in
                    try db.run("INSERT INTO t (k, v) VALUES (?, ?)", ["b", 2])
                    try db.run("UPDATE t SET v = 10 WHERE k = ?", ["a"])
                    throw Planned()
                }
            }
            await #expect(throws: (any Error).self) {
                try await database.write { db in
                    try db.run("INSERT INTO t (k, v) VALUES (?, ?)", ["c", 3])
                    try db.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 4])  // duplicate key
                }
            }
            try await database.write { try $0.run("INSERT INTO t (k, v) VALUES (?, ?)", ["d", 5]) }
            let rows = try await database.read { try $0.query("SELECT k, v FROM t ORDER BY k").map { "\($0.string(0))=\($0.int(1))" } }
            #expect(rows == ["a=1", "d=5"])
        }
    }

    @Test("a pooled connection the server dropped is reconnected by the next read and the next write, not left broken", arguments: TestEngine.postgresOnly)
    func droppedConnectionsReconnect(engine: TestEngine) async throws {
        // make chaos-test found this: after PostgreSQL restarted, reads (BEGIN ... READ ONLY
        // outside the retry) failed with "no connection to the server" on that connection for good.
        try await withDatabase(engine) { place in
            let schema = DatabaseSchema(sqlite: [], postgres: ["CREATE TABLE t (k TEXT PRIMARY KEY)"])
            let database = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            try await database.write { try $0.run("INSERT INTO t (k) VALUES (?)", ["a"]) }
            for round in 0..<3 {
                // The pool's one connection, ended by the server (as a restart ends them all);
                // pg_terminate_backend with a timeout returns once that backend has exited.
                let pid = try #require(try await database.read { try $0.queryFirst("SELECT pg_backend_pid()")?.int(0) })
                let url = place.url
                try await onOwnThread { try PostgresDatabase.execute(url: url, "SELECT pg_terminate_backend(\(pid), 10000)") }
                if round % 2 == 0 {
                    #expect(try await database.read { try $0.queryFirst("SELECT count(*) FROM t")?.int(0) } == Int64(1 + round / 2), "round \(round): a read")
                } else {
                    try await database.write { try $0.run("INSERT INTO t (k) VALUES (?)", [.text("w\(round)")]) }
                }
                #expect(try await database.read { try $0.queryFirst("SELECT count(*) FROM t")?.int(0) } != nil, "round \(round): the next read")
            }
        }
    }

    @Test("PostgreSQL errors carry the SQLSTATE, the server's message and the statement", arguments: TestEngine.postgresOnly)
    func errorsCarrySQLState(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let schema = DatabaseSchema(sqlite: [], postgres: ["CREATE TABLE t (k TEXT PRIMARY KEY)"])
            let database = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            try await database.write { try $0.run("INSERT INTO t (k) VALUES (?)", ["a"]) }
            await #expect { try await database.write { try $0.run("INSERT INTO t (k) VALUES (?)", ["a"]) } } throws: { error in
                guard let error = error as? PostgresError else { return false }
                return error.sqlState == "23505" && error.isUniqueViolation && error.message.contains("duplicate key") && error.sql.contains("INSERT INTO t")
            }
            await #expect { try await database.read { try $0.query("SELECT nope FROM t") } } throws: { error in
                (error as? PostgresError)?.sqlState == "42703"
            }
            // Values of every kind round-trip, NULL and empty ones included.
            let values: [SQLValue] = [.integer(-42), .real(0.1), .text("é ' ?"), .blob([0, 255]), .blob([]), .text(""), .null]
            let row = try await database.read { try $0.queryFirst("SELECT ?, ?, ?, ?, ?, ?, ?::text, 7::int4, true, 2.5::float4, SUM(x) FROM (VALUES (1::bigint), (2)) v(x)", values) }
            #expect(row?.values == values + [.integer(7), .integer(1), .real(2.5), .integer(3)])
        }
    }
}
