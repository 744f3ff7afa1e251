import CSQLite
import DeliveryHistory
import DroneDeliveryAPI
import Foundation
import Messaging
import MessagingNATS
import ProtobufKit
import Storage
import StoragePostgres
import Synchronization
import Testing
import TestSupport

/// "The store cannot serve now" against "the store refused this" (`isStoreUnavailable`), with
/// real engines, and what Delivery History's consumer does with each (issue 15: an outage of its
/// store longer than the queue's retries dead-lettered well-formed events).
@Suite("Store unavailability")
struct StoreUnavailabilityTests {
    @Test("PostgreSQL: a server that cannot be reached is unavailable; a value or a row it refuses is not", arguments: TestEngine.postgresOnly)
    func postgresClassification(engine: TestEngine) async throws {
        let closed = "postgresql://app@127.0.0.1:\(try freePort())/postgres"
        let unreachable = await #expect(throws: PostgresError.self) {
            try await onOwnThread { _ = try PostgresDatabase(url: closed, schema: "unreachable", poolSize: 1, migrations: []) }
        }
        #expect(unreachable.map(isStoreUnavailable) == true, "\(String(describing: unreachable))")

        try await withDatabase(engine) { place in
            let schema = DatabaseSchema(sqlite: [], postgres: ["CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL CHECK (n >= 0))"])
            let database = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            try await database.write { try $0.run("INSERT INTO t (k, n) VALUES (?, ?)", ["a", 1]) }
            let refusals: [(String, SQLValue, SQLValue)] = [("a NUL byte in text", .text("x\u{0}y"), 1), ("a duplicate key", "a", 1), ("a failed CHECK", "b", -1)]
            for (what, key, number) in refusals {
                let refused = await #expect(throws: PostgresError.self, "\(what)") {
                    try await database.write { try $0.run("INSERT INTO t (k, n) VALUES (?, ?)", [key, number]) }
                }
                #expect(refused.map { !$0.sqlState.isEmpty && !isStoreUnavailable($0) } == true, "\(what): \(String(describing: refused))")
            }
            // The refusals left the pooled connection usable.
            #expect(try await database.read { try $0.queryFirst("SELECT count(*) FROM t")?.int(0) } == 1)
        }
    }

    @Test("PostgreSQL: a lock held past lock_timeout (55P03) is unavailable; a statement cancelled by statement_timeout (57014) is not",
          .timeLimit(.minutes(1)), arguments: TestEngine.postgresOnly)
    func postgresContention(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let schema = DatabaseSchema(sqlite: [], postgres: ["CREATE TABLE t (k TEXT PRIMARY KEY)"])
            let holder = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            let contender = try await onOwnThread { try place.location(poolSize: 1).open(schema) }
            // The holder's transaction takes the table and keeps it until released.
            let locked = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
            let holding = Task { try await holder.write { try $0.run("LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); locked.signal(); release.wait() } }
            try await onOwnThread { locked.wait() }
            let waited = await #expect(throws: PostgresError.self) {
                try await contender.write { try $0.run("SET LOCAL lock_timeout = '100ms'"); try $0.run("INSERT INTO t (k) VALUES (?)", ["a"]) }
            }
            release.signal()
            try await holding.value
            #expect(waited?.sqlState == "55P03", "\(String(describing: waited))")
            #expect(waited.map(isStoreUnavailable) == true, "\(String(describing: waited))")
            // The same insert goes in once the lock is gone: the contention was all there was.
            try await contender.write { try $0.run("INSERT INTO t (k) VALUES (?)", ["a"]) }

            let cancelled = await #expect(throws: PostgresError.self) {
                try await contender.write { try $0.run("SET LOCAL statement_timeout = '50ms'"); _ = try $0.query("SELECT pg_sleep(5)", []) }
            }
            #expect(cancelled?.sqlState == "57014", "\(String(describing: cancelled))")
            #expect(cancelled.map(isStoreUnavailable) == false, "a statement slower than the limit is slow every time: \(String(describing: cancelled))")
        }
    }

    @Test("SQLite: a write lock held past busy_timeout (BUSY) and a database at its size limit (FULL) are unavailable, and the store works once they pass")
    func sqliteBusyAndFull() async throws {
        let directory = try makeTemporaryDirectory("busy-full")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("store.sqlite").path
        let migrations = ["CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)"]
        let holder = try SQLiteDatabase(path: path, migrations: migrations)
        let contender = try SQLiteDatabase(path: path, migrations: migrations)
        try await contender.write { try $0.run("PRAGMA busy_timeout = 100") }

        // Another connection to the file holds its write lock.
        let locked = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let holding = Task { try await holder.write { _ in locked.signal(); release.wait() } }
        try await onOwnThread { locked.wait() }
        let busy = await #expect(throws: SQLiteError.self) { try await contender.write { try $0.run("INSERT INTO t (k) VALUES ('a')") } }
        release.signal()
        try await holding.value
        #expect(busy.map { $0.code & 0xff } == SQLITE_BUSY, "\(String(describing: busy))")
        #expect(busy.map(isStoreUnavailable) == true, "\(String(describing: busy))")
        try await contender.write { try $0.run("INSERT INTO t (k) VALUES ('a')") }

        // The file may not grow past a few pages more than it has: a 1 MiB value does not fit.
        let pages = try await contender.read { try $0.queryFirst("PRAGMA page_count")?.int(0) ?? 0 }
        try await contender.write { try $0.run("PRAGMA max_page_count = \(pages + 4)") }
        let full = await #expect(throws: SQLiteError.self) { try await contender.write { try $0.run("INSERT INTO t (k, v) VALUES ('b', zeroblob(1048576))") } }
        #expect(full.map { $0.code & 0xff } == SQLITE_FULL, "\(String(describing: full))")
        #expect(full.map(isStoreUnavailable) == true, "\(String(describing: full))")
        // Room again: the same row goes in, and nothing of the failed one was left behind.
        try await contender.write { try $0.run("PRAGMA max_page_count = 1073741823") }
        try await contender.write { try $0.run("INSERT INTO t (k, v) VALUES ('b', zeroblob(1048576))") }
        #expect(try await holder.read { try $0.queryFirst("SELECT count(*) FROM t")?.int(0) } == 2)
    }

    @Test("PostgreSQL's health probe keeps one connection from probe to probe, replaces one whose backend ended, and names a server it cannot reach",
          .timeLimit(.minutes(1)), arguments: TestEngine.postgresOnly)
    func probeKeepsOneConnection(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let url = place.url, schema = place.schema
            let observer = try await onOwnThread { try PostgresDatabase(url: url, schema: schema, poolSize: 1, migrations: []) }
            let name = "probe test \(UUID().uuidString.prefix(8))"
            // The probe's server backends, seen from another connection.
            @Sendable func backends() async throws -> [Int64] {
                try await observer.read { try $0.query("SELECT pid FROM pg_stat_activity WHERE application_name = ? ORDER BY pid", [.text("fabrikam-probe: \(name)")]).map { $0.int(0) } }
            }
            let proxy = try TCPProxy(to: place.url)
            try await proxy.start()
            let probe = PostgresProbe(url: proxy.url, name: name)
            #expect(try await onOwnThread { probe.problem() } == nil)
            let first = try await backends()
            try #require(first.count == 1, "the probe keeps no connection: \(first)")
            for _ in 0..<4 { #expect(try await onOwnThread { probe.problem() } == nil) }
            #expect(try await backends() == first, "a probe opened a connection of its own")

            // Its backend is ended (an administrator, a pooler): the next probe reconnects and is fine.
            _ = try await observer.read { try $0.query("SELECT pg_terminate_backend(CAST(? AS integer))", [.integer(first[0])]) }
            #expect(try await waitUntil(timeout: .seconds(10)) { try await backends().isEmpty })
            #expect(try await onOwnThread { probe.problem() } == nil)
            let second = try await backends()
            #expect(second.count == 1 && second != first, "\(first) then \(second)")

            // The server cannot be reached: the kept connection breaks and a fresh one is refused.
            try await proxy.stop()
            let problem = try await onOwnThread { probe.problem() }
            #expect(problem?.contains("127.0.0.1") == true && problem?.contains("\(proxy.port)") == true, "\(String(describing: problem))")
            try await proxy.start()
            #expect(try await onOwnThread { probe.problem() } == nil, "the server is reachable again")
            try await proxy.stop()
        }
    }

    @Test("SQLite: a file that cannot be opened is unavailable; a constraint it enforces is not")
    func sqliteClassification() async throws {
        let directory = try makeTemporaryDirectory("unavailable")
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("no-such-directory/store.sqlite").path
        let unopened = #expect(throws: SQLiteError.self) { _ = try SQLiteDatabase(path: missing, migrations: []) }
        #expect(unopened.map(isStoreUnavailable) == true, "\(String(describing: unopened))")

        let database = try SQLiteDatabase(path: directory.appendingPathComponent("store.sqlite").path,
                                          migrations: ["CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))"])
        try await database.write { try $0.run("INSERT INTO t (k, n) VALUES (?, ?)", ["a", 1]) }
        for (what, key, number) in [("a duplicate key", "a", Int64(1)), ("a failed CHECK", "b", -1)] as [(String, String, Int64)] {
            let refused = await #expect(throws: SQLiteError.self, "\(what)") {
                try await database.write { try $0.run("INSERT INTO t (k, n) VALUES (?, ?)", [.text(key), .integer(number)]) }
            }
            #expect(refused.map(isStoreUnavailable) == false, "\(what): \(String(describing: refused))")
        }
        #expect(!isStoreUnavailable(CancellationError()), "an error of no storage engine is not the store's unavailability")
    }

    /// The queue under History's consumer: the embedded broker, and JetStream (which counts
    /// every redelivery itself, so an uncounted postponement is the broker's own bookkeeping).
    enum QueueEngine: String, Sendable, CustomTestStringConvertible {
        case sqlite, jetstream

        var testDescription: String { "\(rawValue) queue" }

        static var available: [QueueEngine] {
            TestNATS.url != nil || TestEngine.required ? [.sqlite, .jetstream] : [.sqlite]
        }

        /// A broker of its own whose queues allow `maxDeliveries` deliveries.
        func open(maxDeliveries: Int) async throws -> any MessageQueue {
            switch self {
            case .sqlite:
                let directory = try makeTemporaryDirectory("history-outage")
                return try SQLiteBroker(path: directory.appendingPathComponent("broker.sqlite").path, maxDeliveries: maxDeliveries)
            case .jetstream:
                let url = try #require(TestNATS.url, "FABRIKAM_TEST_NATS_URL is not set (FABRIKAM_REQUIRE_ENGINES=1): run the tests through tools/with-nats.sh")
                var configuration = JetStreamBroker.Configuration(url: url)
                configuration.namespace = "o" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
                configuration.maxDeliveries = maxDeliveries
                if let user = TestNATS.user, let password = try TestNATS.password() {
                    configuration.credentials = .userPassword(user: user, password: password)
                }
                return try await JetStreamBroker(configuration)
            }
        }
    }

    @Test("History waits out a store outage longer than the queue's retries: the event is recorded, none dead-lettered",
          .timeLimit(.minutes(3)), arguments: TestEngine.postgresOnly, QueueEngine.available)
    func historyOutlastsAnOutage(engine: TestEngine, queue: QueueEngine) async throws {
        try await withDatabase(engine) { place in
            // The store reaches its server only through a proxy this test stops and starts.
            let proxy = try TCPProxy(to: place.url)
            try await proxy.start()
            let store = try await onOwnThread { try SQLHistoryStore(PostgresLocation(url: proxy.url, schema: place.schema, poolSize: 1)) }
            let logic = DeliveryHistoryServiceLogic(store: store)
            let broker = try await queue.open(maxDeliveries: 3)
            _ = try await broker.send(OutgoingMessage(id: "d1-1", key: "d1", payload: try Self.event("d1-1", delivery: "d1").serializedBytes()), to: "events")

            try await proxy.stop()  // the store's server is unreachable from here on
            let attempts = Atomic(0)
            let consumer = MessageConsumer(queue: broker, queueName: "events", consumerName: "deliveryhistory")
            let loop = Task {
                await consumer.run { message in
                    attempts.add(1, ordering: .sequentiallyConsistent)
                    return await logic.handleDeliveryEvent(message)
                }
            }
            defer { loop.cancel() }
            // Twice as many attempts as the queue allows deliveries, all during the outage; or the
            // event went to the dead letters (what a counted retry does).
            let outlasted = try await waitUntil(timeout: .seconds(60)) {
                if attempts.load(ordering: .sequentiallyConsistent) >= 6 { return true }
                return try await !broker.deadLetters(of: "events").isEmpty
            }
            #expect(outlasted, "the handler was not called again during the outage (\(attempts.load(ordering: .sequentiallyConsistent)) attempts)")
            #expect(try await broker.deadLetters(of: "events").map(\.reason) == [], "dead-lettered during the outage")

            try await proxy.start()  // reachable again
            let settled = try await waitUntil(timeout: .seconds(60)) { try await broker.depth(of: "events") == 0 }
            #expect(settled, "the event was not settled once the store was back")
            #expect(try await store.events(deliveryID: "d1", offset: 0, limit: 10).map(\.eventId) == ["d1-1"])
            #expect(try await broker.deadLetters(of: "events").map(\.reason) == [])
            loop.cancel()
            await loop.value
            try await proxy.stop()
        }
    }

    @Test("History retries an event its store refuses, then dead-letters it naming the store's error", .timeLimit(.minutes(3)), arguments: TestEngine.postgresOnly)
    func historyDeadLettersARefusedEvent(engine: TestEngine) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLHistoryStore($0) }
            let logic = DeliveryHistoryServiceLogic(store: store)
            let directory = try makeTemporaryDirectory("history-refused")
            defer { try? FileManager.default.removeItem(at: directory) }
            let broker = try SQLiteBroker(path: directory.appendingPathComponent("broker.sqlite").path, maxDeliveries: 3)
            // A rule of this test's database the event breaks: PostgreSQL refuses the row (23514).
            let url = place.url, schema = place.schema
            try await onOwnThread { try PostgresDatabase.execute(url: url, "ALTER TABLE \(schema).events ADD CONSTRAINT not_d2 CHECK (delivery_id <> 'd2')") }
            _ = try await broker.send(OutgoingMessage(id: "m", key: "d2", payload: try Self.event("d2-1", delivery: "d2").serializedBytes()), to: "events")
            let attempts = Atomic(0)
            let consumer = MessageConsumer(queue: broker, queueName: "events", consumerName: "deliveryhistory")
            let loop = Task {
                await consumer.run { message in
                    attempts.add(1, ordering: .sequentiallyConsistent)
                    return await logic.handleDeliveryEvent(message)
                }
            }
            defer { loop.cancel() }
            let lettered = try await waitUntil(timeout: .seconds(60)) { try await !broker.deadLetters(of: "events").isEmpty }
            #expect(lettered)
            let reason = try await broker.deadLetters(of: "events").first?.reason ?? ""
            #expect(reason.contains("store refused it") && reason.contains("23514"), "\(reason)")
            #expect(attempts.load(ordering: .sequentiallyConsistent) == 3, "each of the queue's deliveries was tried")
            loop.cancel()
            await loop.value
        }
    }

    static func event(_ id: String, delivery: String) -> DeliveryV1.DeliveryEvent {
        var event = DeliveryV1.DeliveryEvent()
        event.eventId = id
        event.deliveryId = delivery
        event.stage = .created
        event.eventTime = .now
        event.sequence = 1
        return event
    }
}

/// A TCP forwarder to a PostgreSQL server in a process of its own (python3, which
/// tools/with-postgres.sh also needs). Stopping it kills the process (SIGKILL: a child started
/// from a test's thread inherits that thread's blocked signals, SIGTERM among them): every
/// connection through it breaks and new ones are refused, as when the server is unreachable.
/// Starting it again listens on the same port. Used from one test task at a time.
final class TCPProxy: @unchecked Sendable {
    let port: Int
    let url: String
    private let target: Int
    private var process: Process?

    init(to serverURL: String) throws {
        var components = try #require(URLComponents(string: serverURL))
        target = try #require(components.port)
        port = try freePort()
        components.port = port
        url = try #require(components.string)
    }

    deinit { if let process { kill(process.processIdentifier, SIGKILL) } }

    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script, String(port), String(target)]
        let output = Pipe()
        process.standardOutput = output
        // Not the test's own stderr: a forwarder left behind by a crashed test run would hold
        // that pipe open, and `make test` would wait on it instead of failing.
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let reading = output.fileHandleForReading
        let line = try await onOwnThread { String(decoding: reading.availableData, as: UTF8.self) }
        try #require(line.hasPrefix("listening"), "the proxy did not start: \(line)")
    }

    func stop() async throws {
        guard let process else { return }
        self.process = nil
        kill(process.processIdentifier, SIGKILL)
        let exited = Owned(process)
        try await onOwnThread { exited.value.waitUntilExit() }
    }

    private final class Owned: @unchecked Sendable {
        let value: Process
        init(_ value: Process) { self.value = value }
    }

    private static let script = """
        import asyncio, os, sys
        port, target = int(sys.argv[1]), int(sys.argv[2])
        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except Exception:
                pass
            finally:
                writer.close()
        async def forward(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
            except Exception:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        async def main():
            server = await asyncio.start_server(forward, "127.0.0.1", port, reuse_address=True)
            print("listening", flush=True)
            parent = os.getppid()
            while os.getppid() == parent:  # the test process is gone (a crash): so is the forwarder
                await asyncio.sleep(0.5)
        asyncio.run(main())
        """
}
