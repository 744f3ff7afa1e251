import Foundation
import Messaging
import MessagingNATS
import Testing
import TestSupport

extension NATSCredentials {
    /// The user and password of the server `tools/with-nats.sh` started (it requires them).
    static func testServer() throws -> NATSCredentials {
        guard let user = TestNATS.user, let password = try TestNATS.password() else { return .none }
        return .userPassword(user: user, password: password)
    }
}

/// The NATS server of the test run requires a user and password (`tools/with-nats.sh`), as a
/// production server does: every other NATS test connects with them; these show that the server
/// does refuse a client without them or with a wrong password, that the refusal says so, and that
/// the password never appears in what a client reports.
@Suite("NATS credentials", .enabled(if: TestNATS.url != nil || ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"))
struct NATSCredentialsTests {
    static func connect(_ credentials: NATSCredentials) async throws -> JetStreamBroker {
        let url = try #require(TestNATS.url, "FABRIKAM_TEST_NATS_URL is not set: run the tests through tools/with-nats.sh")
        var configuration = JetStreamBroker.Configuration(url: url)
        configuration.namespace = "c" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        configuration.credentials = credentials
        return try await JetStreamBroker(configuration)
    }

    /// What connecting with `credentials` throws ("connected" when it does not).
    static func connectError(_ credentials: NATSCredentials) async -> String {
        do {
            _ = try await connect(credentials)
            return "connected"
        } catch {
            return "\(error)"
        }
    }

    @Test("the test server requires credentials: with_nats.sh gave a user and a password file")
    func serverHasCredentials() throws {
        #expect(TestNATS.user == "fabrikam")
        let password = try #require(try TestNATS.password())
        #expect(password.count >= 20)
    }

    @Test("without credentials, the connect fails with the server's Authorization Violation")
    func noCredentialsRefused() async throws {
        let refusal = await Self.connectError(.none)
        #expect(refusal.contains("Authorization Violation"), "\(refusal)")
    }

    @Test("a wrong password fails the same way, and the error does not carry the password")
    func wrongPasswordRefused() async throws {
        let wrong = "not-the-password-\(UUID().uuidString)"
        let refusal = await Self.connectError(.userPassword(user: "fabrikam", password: wrong))
        #expect(refusal.contains("Authorization Violation"), "\(refusal)")
        #expect(!refusal.contains(wrong))
    }

    @Test("with the right user and password, a message goes through the queue")
    func rightCredentialsWork() async throws {
        let broker = try await Self.connect(try NATSCredentials.testServer())
        let queue = "credentials-check"
        _ = try await broker.send(OutgoingMessage(id: "m1", key: "k1", payload: Array("hello".utf8)), to: queue)
        let received = try await receiveSome(broker, queue, max: 1, lease: .seconds(30))
        #expect(received.map(\.payload) == [Array("hello".utf8)])
        for message in received { try await broker.acknowledge(message) }
    }

    @Test("a URL's own password is hidden in what is logged")
    func urlRedacted() {
        #expect(NATSConnection.redacted("nats://fabrikam:s3cret@nats:4222") == "nats://fabrikam:***@nats:4222")
        #expect(NATSConnection.redacted("nats://tok3n@a:4222,nats://u:p@b:4222") == "nats://***@a:4222,nats://u:***@b:4222")
        #expect(NATSConnection.redacted("nats://nats:4222") == "nats://nats:4222")
    }
}
