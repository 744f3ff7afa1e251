import Foundation
import Messaging
import Storage
import Testing
import TestSupport

@Suite("SQLite storage and the embedded broker")
struct StorageAndMessagingTests {
    func temporaryFile(_ name: String) throws -> String {
        try makeTemporaryDirectory("storage").appendingPathComponent(name).path
    }

    @Test("a committed write survives closing and reopening the file; WAL mode and full sync are on")
    func durableAcrossReopen() async throws {
        let path = try temporaryFile("t.sqlite")
        do {
            let database = try SQLiteDatabase(path: path, migrations: ["CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)"])
            try await database.write { try $0.run("INSERT INTO t VALUES (?, ?)", ["a", .blob([0, 1, 2])]) }
            let mode = try await database.read { try $0.queryFirst("PRAGMA journal_mode")?.string(0) }
            let sync = try await database.read { try $0.queryFirst("PRAGMA synchronous")?.int(0) }
            #expect(mode == "wal")
            #expect(sync == 2, "FULL")
        }
        let reopened = try SQLiteDatabase(path: path, migrations: ["CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)"])
        let value = try await reopened.read { try $0.queryFirst("SELECT v FROM t WHERE k = ?", ["a"])?.bytes(0) }
        #expect(value == [0, 1, 2])
    }

    @Test("concurrent writes share commits, and one that fails rolls back alone")
    func groupCommitIsolatesFailures() async throws {
        let database = try SQLiteDatabase(path: try temporaryFile("g.sqlite"), migrations: ["CREATE TABLE t (k INTEGER PRIMARY KEY)"])
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<200 {
                group.addTask {
                    do {
                        try await database.write { db in
                            try db.run("INSERT INTO t VALUES (?)", [.int(index)])
                            // Every tenth write inserts a duplicate after its first row: it must leave nothing.
                            if index % 10 == 0 { try db.run("INSERT INTO t VALUES (?)", [.int(index)]) }
                        }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 180)
        let rows = try await database.read { try $0.query("SELECT k FROM t ORDER BY k").map { Int($0.int(0)) } }
        #expect(rows == (0..<200).filter { $0 % 10 != 0 })
    }

    @Test("a bad statement is an error naming SQLite's message and the statement")
    func errorsNameTheStatement() async throws {
        let database = try SQLiteDatabase(path: try temporaryFile("e.sqlite"), migrations: [])
        await #expect { try await database.read { try $0.query("SELECT nope FROM missing") } } throws: { error in
            "\(error)".contains("no such table: missing") && "\(error)".contains("SELECT nope FROM missing")
        }
    }

    @Test("send de-duplicates on the message id and returns the first payload")
    func sendDeduplicates() async throws {
        let broker = try SQLiteBroker(path: try temporaryFile("b.sqlite"))
        let first = try await broker.send(OutgoingMessage(id: "m1", payload: [1]), to: "q")
        let again = try await broker.send(OutgoingMessage(id: "m1", payload: [2]), to: "q")
        #expect(first.duplicateOf == nil)
        #expect(again.duplicateOf == [1])
        #expect(try await broker.depth(of: "q") == 1)
    }

    @Test("an unacknowledged message comes back when its lease runs out; an acknowledged one never")
    func leaseExpiryRedelivers() async throws {
        let broker = try SQLiteBroker(path: try temporaryFile("l.sqlite"))
        _ = try await broker.send(OutgoingMessage(id: "a", headers: ["traceparent": "00-x=y%-1"], payload: [7]), to: "q")
        let leased = try await broker.receive(from: "q", consumer: "c1", maxMessages: 10, lease: .seconds(60))
        #expect(leased.map(\.id) == ["a"])
        #expect(leased.first?.headers["traceparent"] == "00-x=y%-1", "headers round-trip, escapes included")
        #expect(try await broker.receive(from: "q", consumer: "c2", maxMessages: 10, lease: .seconds(60)).isEmpty, "leased to c1")
        // The lease runs out (set to end now, rather than waiting: a test must not race the clock).
        try await broker.extendLease(try #require(leased.first), by: .zero)
        let redelivered = try await broker.receive(from: "q", consumer: "c2", maxMessages: 10, lease: .seconds(60))
        #expect(redelivered.first?.deliveryCount == 2)
        // SQLite fences acknowledgements (JetStream does not, see MessagingGuarantees): c1's lease is gone.
        try await broker.acknowledge(try #require(leased.first))
        #expect(try await broker.depth(of: "q") == 1, "a stale acknowledgement removes nothing")
        try await broker.acknowledge(try #require(redelivered.first))
        #expect(try await broker.depth(of: "q") == 0)
    }

    @Test("messages with one key go out one at a time, in order; other keys are not held up")
    func perKeyOrder() async throws {
        let broker = try SQLiteBroker(path: try temporaryFile("k.sqlite"))
        for (id, key) in [("1", "a"), ("2", "a"), ("3", "b")] {
            _ = try await broker.send(OutgoingMessage(id: id, key: key, payload: []), to: "q")
        }
        let firstBatch = try await broker.receive(from: "q", consumer: "c", maxMessages: 10, lease: .seconds(5))
        #expect(firstBatch.map(\.id) == ["1", "3"])
        #expect(try await broker.receive(from: "q", consumer: "c", maxMessages: 10, lease: .seconds(5)).isEmpty)
        try await broker.acknowledge(firstBatch[0])
        #expect(try await broker.receive(from: "q", consumer: "c", maxMessages: 10, lease: .seconds(5)).map(\.id) == ["2"])
    }

    @Test("dead letters keep the payload and the reason; too many deliveries dead-letter by themselves")
    func deadLetters() async throws {
        let broker = try SQLiteBroker(path: try temporaryFile("d.sqlite"), maxDeliveries: 2)
        _ = try await broker.send(OutgoingMessage(id: "bad", key: "k", payload: [9]), to: "q")
        _ = try await broker.send(OutgoingMessage(id: "next", key: "k", payload: [1]), to: "q")
        let bad = try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .seconds(5))[0]
        try await broker.deadLetter(bad, reason: "cannot parse")
        let next = try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .milliseconds(50))
        #expect(next.map(\.id) == ["next"], "the key is not blocked by the dead letter")
        try await Task.sleep(for: .milliseconds(100))
        _ = try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .milliseconds(50))
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .milliseconds(50)).isEmpty)
        let dead = try await broker.deadLetters(of: "q")
        #expect(dead.map(\.id) == ["bad", "next"])
        #expect(dead[0].reason == "cannot parse" && dead[0].payload == [9])
        #expect(dead[1].reason.contains("not acknowledged after 2 deliveries"))
    }

    @Test("every subscriber group gets every event; a late group starts from the first retained one")
    func eventStreamFanOut() async throws {
        let broker = try SQLiteBroker(path: try temporaryFile("s.sqlite"))
        let early = try await broker.subscribe(to: "events", group: "history")
        _ = try await broker.publish(OutgoingMessage(id: "e1", payload: [1]), to: "events")
        _ = try await broker.publish(OutgoingMessage(id: "e1", payload: [1]), to: "events")
        let late = try await broker.subscribe(to: "events", group: "scheduler")
        _ = try await broker.publish(OutgoingMessage(id: "e2", payload: [2]), to: "events")
        #expect(try await broker.receive(from: early, consumer: "h", maxMessages: 10, lease: .seconds(5)).map(\.id) == ["e1", "e2"])
        #expect(try await broker.receive(from: late, consumer: "s", maxMessages: 10, lease: .seconds(5)).map(\.id) == ["e1", "e2"])
    }

    @Test("two broker handles (two connections, one process) on one file share the queue without double delivery; TwoProcessTests races two processes")
    func sharedFile() async throws {
        let path = try temporaryFile("shared.sqlite")
        let producer = try SQLiteBroker(path: path)
        let consumerA = try SQLiteBroker(path: path)
        let consumerB = try SQLiteBroker(path: path)
        for index in 0..<100 { _ = try await producer.send(OutgoingMessage(id: "m\(index)", payload: []), to: "q") }
        async let a = consumerA.receive(from: "q", consumer: "a", maxMessages: 100, lease: .seconds(5))
        async let b = consumerB.receive(from: "q", consumer: "b", maxMessages: 100, lease: .seconds(5))
        let (gotA, gotB) = try await (a, b)
        #expect(Set(gotA.map(\.id)).isDisjoint(with: gotB.map(\.id)))
        #expect(gotA.count + gotB.count == 100)
    }
}
