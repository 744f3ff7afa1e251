import Foundation
import Messaging
@testable import MessagingNATS
import Testing
import TestSupport

/// JetStream's sends publish asynchronously and wait for their own acknowledgement
/// (`NATSConnection.publishAwaitingAck`): a refusal must fail exactly the send it concerns,
/// whether the client refuses it before it leaves or the server answers it negatively, and the
/// sends in flight beside it must be answered as usual.
@Suite("JetStream publishing", .enabled(if: Engine.natsURL != nil || ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"))
struct JetStreamPublishTests {
    static func open() async throws -> JetStreamBroker {
        let url = try #require(Engine.natsURL, "FABRIKAM_TEST_NATS_URL is not set: run the tests through tools/with-nats.sh")
        var configuration = JetStreamBroker.Configuration(url: url)
        configuration.namespace = "p" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        configuration.credentials = try NATSCredentials.testServer()
        return try await JetStreamBroker(configuration)
    }

    /// Sends `count` small messages to `queue` at once, and `odd` among them; returns the
    /// small ones' outcomes and the odd one's error (nil if it was accepted).
    static func sendAround(_ broker: JetStreamBroker, queue: String, count: Int,
                           odd: @escaping @Sendable () async throws -> SendResult) async throws -> (ok: [SendResult], oddError: (any Error)?) {
        try await withThrowingTaskGroup(of: (SendResult?, (any Error)?, Bool).self) { group in
            group.addTask {
                do { return (try await odd(), nil, true) } catch { return (nil, error, true) }
            }
            for index in 0..<count {
                group.addTask {
                    (try await broker.send(OutgoingMessage(id: "ok\(index)", key: "k\(index)", payload: [1]), to: queue), nil, false)
                }
            }
            var ok: [SendResult] = [], oddError: (any Error)?
            for try await (result, error, isOdd) in group {
                if isOdd { oddError = error } else if let result { ok.append(result) }
            }
            return (ok, oddError)
        }
    }

    @Test("a message the client refuses (over the server's max_payload) fails its send alone")
    func clientRefusalFailsOneSend() async throws {
        let broker = try await Self.open()
        _ = try await broker.send(OutgoingMessage(id: "warm", key: "w", payload: [0]), to: "pub")
        let big = [UInt8](repeating: 7, count: 2 << 20)
        let (ok, oddError) = try await Self.sendAround(broker, queue: "pub", count: 50) {
            try await broker.send(OutgoingMessage(id: "big", key: "big", payload: big), to: "pub")
        }
        let error = try #require(oddError as? NATSError, "the 2 MiB message was accepted: \(String(describing: oddError))")
        #expect(error.description.lowercased().contains("payload"), "\(error)")
        #expect(ok.count == 50 && Set(ok.map(\.sequence)).count == 50)
        #expect(try await broker.depth(of: "pub") == 51)
        // Nothing is left waiting in the connection's table: the next send is answered as usual.
        #expect(try await broker.send(OutgoingMessage(id: "after", key: "a", payload: [2]), to: "pub").sequence > 0)
    }

    @Test("a negative answer from the server (no stream for the subject) fails its send alone; sends beside it succeed")
    func serverRefusalFailsOneSend() async throws {
        let broker = try await Self.open()
        _ = try await broker.send(OutgoingMessage(id: "warm", key: "w", payload: [0]), to: "gone")
        _ = try await broker.send(OutgoingMessage(id: "warm", key: "w", payload: [0]), to: "here")
        // The stream goes away behind the broker's back (an operator, a lost server store): the
        // broker still knows it as created, so its next send is published and the server answers
        // that no stream takes the subject.
        let stream = broker.topology(of: "gone").stream
        try await Blocking.run { try broker.connection.request("$JS.API.STREAM.DELETE.\(stream)", "") }
        let (ok, oddError) = try await Self.sendAround(broker, queue: "here", count: 50) {
            try await broker.send(OutgoingMessage(id: "lost", key: "k", payload: [1]), to: "gone")
        }
        #expect(oddError is NATSError, "a send to a deleted stream was answered as stored: \(String(describing: oddError))")
        #expect(ok.count == 50 && Set(ok.map(\.sequence)).count == 50)
        #expect(try await broker.depth(of: "here") == 51)
    }
}
