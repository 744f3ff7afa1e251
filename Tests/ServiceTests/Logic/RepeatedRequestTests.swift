import DroneDeliveryAPI
import Foundation
import Ingestion
import Messaging
import MessagingNATS
import ProtobufKit
import RPC
import ServiceKit
import Testing
import TestSupport

/// A repeated `request_id` is the same delivery on both engines, also once the engine has
/// forgotten the first message (JetStream drops a settled one from its work-queue stream and
/// keeps only the message id, for its de-duplication window).
@Suite("Ingestion: a repeated request id")
struct RepeatedRequestTests {
    enum BrokerEngine: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, jetstream
        var testDescription: String { rawValue }

        static var available: [BrokerEngine] {
            let environment = ProcessInfo.processInfo.environment
            return environment["FABRIKAM_TEST_NATS_URL"] != nil || environment["FABRIKAM_REQUIRE_ENGINES"] == "1" ? [.sqlite, .jetstream] : [.sqlite]
        }

        func open() async throws -> any MessageQueue {
            switch self {
            case .sqlite:
                return try SQLiteBroker(path: try makeTemporaryDirectory("repeat").appendingPathComponent("broker.sqlite").path)
            case .jetstream:
                let url = try #require(ProcessInfo.processInfo.environment["FABRIKAM_TEST_NATS_URL"],
                                       "FABRIKAM_TEST_NATS_URL is not set (FABRIKAM_REQUIRE_ENGINES=1): run the tests through tools/with-nats.sh")
                var configuration = JetStreamBroker.Configuration(url: url)
                configuration.namespace = "r" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
                if let user = TestNATS.user, let password = try TestNATS.password() {
                    configuration.credentials = .userPassword(user: user, password: password)
                }
                return try await JetStreamBroker(configuration)
            }
        }
    }

    @Test("a repeat after the first request was settled gets the first delivery id; another account's same request id another one",
          arguments: BrokerEngine.available)
    func repeatAfterSettlement(engine: BrokerEngine) async throws {
        let broker = try await engine.open()
        let logic = IngestionServiceLogic(queue: broker)
        let owner = ServerContext.inProcess(metadata: Metadata([("x-account-id", "acct-demo")]))
        let first = try await logic.createDelivery(deliveryRequest(requestID: "order-17"), context: owner)

        // Workflow's part: the request is taken and settled, so a work-queue stream forgets it.
        // (A JetStream fetch hands out what the server answered to the one before it: poll.)
        var taken: [ReceivedMessage] = []
        let received = try await waitUntil {
            taken = try await broker.receive(from: IngestionServiceLogic.requestQueue, consumer: "w", maxMessages: 10, lease: .seconds(30))
            return !taken.isEmpty
        }
        #expect(received)
        #expect(taken.map(\.key) == [first.deliveryId])
        for message in taken { try await broker.acknowledge(message) }
        #expect(try await broker.depth(of: IngestionServiceLogic.requestQueue) == 0)

        let again = try await logic.createDelivery(deliveryRequest(requestID: "order-17"), context: owner)
        #expect(again.deliveryId == first.deliveryId)
        #expect(try await broker.depth(of: IngestionServiceLogic.requestQueue) == 0, "the repeat queued nothing")

        var other = deliveryRequest(requestID: "order-17")
        other.owner!.accountId = "acct-b"
        let otherAccount = ServerContext.inProcess(metadata: Metadata([("x-account-id", "acct-b")]))
        let theirs = try await logic.createDelivery(other, context: otherAccount)
        #expect(theirs.deliveryId != first.deliveryId)
        #expect(try await broker.depth(of: IngestionServiceLogic.requestQueue) == 1)
    }
}
