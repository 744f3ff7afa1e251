import Foundation
import Glibc
import Messaging
@testable import MessagingNATS
import Synchronization
import Testing
import TestSupport

/// A nats-server of the test's own (tools/with-nats.sh's is shared by every test and must not be
/// killed): JetStream on a store directory that survives a SIGKILL and a restart on the same port.
final class OwnNATSServer: @unchecked Sendable {
    let directory: URL
    let port: Int
    private var process: Process?

    init() throws {
        directory = try makeTemporaryDirectory("fabrikam-nats-crash")
        // Below the ephemeral range: the server restarts on this port after its SIGKILL.
        port = try freePort()
    }

    var url: String { "nats://127.0.0.1:\(port)" }

    /// nats-server on the PATH (Debian installs it in /usr/sbin).
    static func executable() throws -> String {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin"]
        return try #require(directories.map { $0 + "/nats-server" }.first { FileManager.default.isExecutableFile(atPath: $0) },
                            "nats-server is not installed (make deps)")
    }

    /// Starts the server on the store directory and waits until it accepts connections.
    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.executable())
        process.arguments = ["-js", "-sd", directory.appendingPathComponent("store").path, "-a", "127.0.0.1", "-p", String(port)]
        let log = directory.appendingPathComponent("server.log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
        let ready = try await waitUntil {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return text.components(separatedBy: "Server is ready").count - 1 >= self.starts + 1
        }
        starts += 1
        try #require(ready, "nats-server did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    private var starts = 0

    /// SIGKILL, as a crash: nothing of the server's runs after it.
    /// SIGKILLs the server as soon as `path` is modified after `time`, watching from a thread of
    /// its own (the cooperative pool is busy under the whole suite, and the kill must come
    /// before the server writes what it writes later). False when that did not happen within 20 s.
    func kill(whenModified path: String, after time: Date) async throws -> Bool {
        guard let process else { return false }
        let killed = try await onOwnThread { () -> Bool in
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, modified > time {
                    Glibc.kill(process.processIdentifier, SIGKILL)
                    return true
                }
                usleep(2_000)
            }
            return false
        }
        if killed { try await kill() }
        return killed
    }

    func kill() async throws {
        guard let process else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        try await onOwnThread { process.waitUntilExit() }
        self.process = nil
    }

    func stop() {
        if let process, process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process = nil
        try? FileManager.default.removeItem(at: directory)
    }
}

/// What a crash of nats-server 2.9.10 does to a subscriber group, and that the broker still
/// delivers every later event of every key after it.
///
/// The server writes a durable consumer's state (its acknowledgement floor) to disk sooner than
/// a work-queue stream's removals: SIGKILLed soon after a run of acknowledgements, it comes back
/// with acknowledged messages in the stream again and the consumer past them, so the consumer
/// never hands them out again. The broker keeps the messages of one key in order (a message
/// waits while an earlier one of its key is in the stream), so before the fix each such message
/// held back every later event of its key for ever: the chaos test's "lost" history events (a
/// delivery's stage changes after a NATS kill never reached Delivery History).
@Suite("JetStream after a server crash", .enabled(if: Engine.natsURL != nil || ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"))
struct JetStreamCrashTests {
    /// The consumer's lease (the group consumer's AckWait, set by the first receive).
    static let lease = Duration.seconds(5)

    /// Receives from `queue` and acknowledges what it receives (all but `keep`), until `done`
    /// holds for the ids received so far and a receive finds nothing (and, with `empty`, the
    /// queue holds nothing), or `timeout` passes; returns the ids received.
    static func drain(_ broker: JetStreamBroker, _ queue: String, keep: Set<String> = [], empty: Bool = true, timeout: Duration = .seconds(30),
                      until done: @escaping @Sendable (Set<String>) -> Bool) async throws -> Set<String> {
        let seen = Mutex<Set<String>>([])
        _ = try await waitUntil(timeout: timeout) {
            let messages = (try? await broker.receive(from: queue, consumer: "c", maxMessages: 256, lease: lease)) ?? []
            for message in messages {
                if !keep.contains(message.id) { try? await broker.acknowledge(message) }
                _ = seen.withLock { $0.insert(message.id) }
            }
            let now = seen.withLock { $0 }
            guard messages.isEmpty, done(now) else { return false }
            if !empty { return true }
            return (try? await broker.depth(of: queue)) == 0
        }
        return seen.withLock { $0 }
    }

    @Test("a key's events after a SIGKILL of nats-server are delivered, though the crash brought back its acknowledged ones")
    func keysAfterCrash() async throws {
        // Whether a crash brings acknowledged messages back depends on when the server wrote
        // what; under the load of the whole suite one crash in a few writes everything first.
        // So up to five crashes, each on a new server: the first that brings some back is the
        // test, and none in five is a failure.
        for attempt in 1...5 {
            if try await crashOnce(lastAttempt: attempt == 5) { break }
        }
    }

    /// One crash and what follows it; false when the crash brought no acknowledged message back
    /// (nothing to test; an issue is recorded on the last attempt).
    func crashOnce(lastAttempt: Bool) async throws -> Bool {
        let server = try OwnNATSServer()
        defer { server.stop() }
        try await server.start()
        var configuration = JetStreamBroker.Configuration(url: server.url)
        configuration.namespace = "crash"
        let broker = try await JetStreamBroker(configuration)
        let queue = try await broker.subscribe(to: "events", group: "history")
        let keys = (0..<200).map { "d\($0)" }

        // An event whose handler is still running when the server dies (it holds its lease), so
        // the stream is not empty at the crash, as it seldom is under load.
        _ = try await broker.publish(OutgoingMessage(id: "held", key: "held", payload: [0]), to: "events")
        let held = try await Self.drain(broker, queue, keep: ["held"], empty: false) { $0.contains("held") }
        try #require(held.contains("held"))
        // One event per key, each delivered and acknowledged (as Delivery History does).
        for key in keys { _ = try await broker.publish(OutgoingMessage(id: "\(key)-1", key: key, payload: [1]), to: "events") }
        let first = try await Self.drain(broker, queue, keep: ["held"], empty: false) { $0.isSuperset(of: keys.map { "\($0)-1" }) }
        try #require(first.isSuperset(of: keys.map { "\($0)-1" }), "not every first event was delivered before the crash: \(first.count)")
        // The crash comes once the server has written the consumer's state after the last
        // acknowledgement (it does within about 100 ms; the stream's removals wait longer).
        let acknowledged = Date()
        let consumerState = server.directory.appendingPathComponent("store/jetstream/$G/streams/\(broker.topology(of: queue).stream)/obs/\(JetStreamBroker.consumerName)/o.dat")
        let written = try await server.kill(whenModified: consumerState.path, after: acknowledged)
        try #require(written, "the server did not write the consumer's state to \(consumerState.path)")
        try await server.start()
        // The held event comes back after its lease and is acknowledged now, with any other
        // event the consumer hands out again.
        let back = try await Self.drain(broker, queue, empty: false, timeout: .seconds(60)) { $0.contains("held") }
        try #require(back.contains("held"), "the held event did not come back after the restart")

        // The precondition, as the server reports it after the restart: acknowledged messages
        // (at or below the consumer's floor) are in the group's stream again.
        let stream = broker.topology(of: queue).stream, subjects = broker.topology(of: queue).subjectRoot + ".>"
        let scan: @Sendable () throws -> (floor: UInt64, back: [UInt64]) = {
            let floor = try broker.acknowledgementFloor(stream: stream)
            var back: [UInt64] = []
            var next: UInt64 = 1
            while let message = try broker.directGet(stream: stream, sequence: next, nextBySubject: subjects), message.sequence <= floor {
                back.append(message.sequence)
                next = message.sequence + 1
            }
            return (floor, back)
        }
        let found = Mutex<(floor: UInt64, back: [UInt64])?>(nil)
        // The first requests after the restart may fail while the client reconnects.
        _ = try await waitUntil {
            guard let result = try? await Blocking.run(scan) else { return false }
            found.withLock { $0 = result }
            return true
        }
        let (floor, acknowledgedBack) = try #require(found.withLock { $0 }, "the restarted server never answered")
        if acknowledgedBack.isEmpty {
            print("JetStreamCrashTests: the crash brought no acknowledged message back (consumer floor \(floor))\(lastAttempt ? "" : "; crashing a new server")")
            if lastAttempt { Issue.record("none of five crashes left an acknowledged message in the stream (last consumer floor \(floor)): nothing was tested") }
            return false
        }

        // A second event for every key: each must be delivered.
        for key in keys {
            let event = OutgoingMessage(id: "\(key)-2", key: key, payload: [2])
            let published = try await waitUntil { (try? await broker.publish(event, to: "events")) != nil }
            try #require(published, "publishing \(event.id) after the restart failed")
        }
        let expected = Set(keys.map { "\($0)-2" })
        let second = try await Self.drain(broker, queue) { expected.isSubset(of: $0) }
        let missing = expected.subtracting(second).sorted { $0.localizedStandardCompare($1) == .orderedAscending }
        #expect(missing.isEmpty, "\(missing.count) keys' second events never delivered (\(acknowledgedBack.count) acknowledged messages came back at or below floor \(floor)): \(missing.prefix(10))")
        #expect(try await broker.depth(of: queue) == 0, "the group's stream still holds messages")
        return true
    }

    /// The usual case of the same check, without a crash: the earlier message of the key was
    /// looked up, then acknowledged (and so removed) before the consumer's floor was read. Its
    /// removal finds nothing to remove, which is no error: the next message is the key's first.
    @Test("an earlier message acknowledged between the look-up and the floor is passed over, not an error")
    func acknowledgedMeanwhile() async throws {
        let broker = try await JetStreamPublishTests.open()
        let queue = try await broker.subscribe(to: "events", group: "race")
        _ = try await broker.publish(OutgoingMessage(id: "e1", key: "k", payload: [1]), to: "events")
        _ = try await broker.publish(OutgoingMessage(id: "e2", key: "k", payload: [2]), to: "events")
        let topology = broker.topology(of: queue)
        let stale = try #require(try await Blocking.run { try broker.directGet(stream: topology.stream, sequence: 1, nextBySubject: topology.subject(key: "k")) })
        let received = Mutex<ReceivedMessage?>(nil)
        _ = try await waitUntil {
            if let message = try await broker.receive(from: queue, consumer: "c", maxMessages: 1, lease: Self.lease).first { received.withLock { $0 = message } }
            return received.withLock { $0 } != nil
        }
        let e1 = try #require(received.withLock { $0 })
        #expect(e1.id == "e1" && UInt64(e1.sequence) == stale.sequence)
        try await broker.acknowledge(e1)
        let next = try await Blocking.run {
            try broker.removingAcknowledged(from: stale, before: stale.sequence + 1, subject: topology.subject(key: "k"), stream: topology.stream, queue: queue)
        }
        #expect(next?.headers["Fabrikam-Msg-Id"] == "e2")
    }
}
