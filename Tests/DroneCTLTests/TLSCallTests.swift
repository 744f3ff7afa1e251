import Foundation
import RPC
import RPCServices
import Testing
import TestSupport

/// dronectl's TLS flags (issue 13 item 4, issue 17) against a TLS server with mutual TLS:
/// --cacert, --cert/--key, --servername, --insecure, and the failures as exit 64 + UNAVAILABLE
/// with the reason.
@Suite("dronectl over TLS", .serialized)
struct TLSCallTests {
    @Test("health check over mutual TLS; without a client certificate, with the wrong name, or cleartext, it fails with the reason")
    func healthOverTLS() async throws {
        var router = Router()
        HealthService().register(in: &router)
        let certificates = try await TestCertificates.directory()
        let server = RPCServer(router: router, options: .defaults {
            // For the name "delivery" only (no IP SANs), so that the name is what is checked.
            $0.tls = ServerTLS(certificateChainFile: certificates + "/named-server.pem", privateKeyFile: certificates + "/named-server-key.pem",
                               clientCAFile: certificates + "/ca.pem")
            $0.shutdownGracePeriod = .milliseconds(200)
        })
        let port = try await server.start()
        let address = ["--server", "127.0.0.1:\(port)"]
        let client = ["--cacert", certificates + "/ca.pem", "--cert", certificates + "/client.pem", "--key", certificates + "/client-key.pem"]
        let dronectl = Dronectl()
        let outcomes = try await onOwnThread {
            [
                try dronectl.run(["health", "check"] + address + client + ["--servername", "delivery"]),
                try dronectl.run(["health", "check"] + address + client),
                try dronectl.run(["health", "check"] + address + ["--cacert", certificates + "/ca.pem", "--servername", "delivery"]),
                try dronectl.run(["health", "check"] + address + client + ["--servername", "nobody.example"]),
                try dronectl.run(["health", "check"] + address),
                try dronectl.run(["health", "check"] + address + ["--insecure", "--cert", certificates + "/client.pem", "--key", certificates + "/client-key.pem"]),
            ]
        }
        #expect(outcomes[0].status == 0, "\(outcomes[0])")
        #expect(outcomes[0].output.contains("SERVING"), "\(outcomes[0])")
        #expect(outcomes[1].status == 64 + 14, "127.0.0.1 is not in the certificate: \(outcomes[1])")
        #expect(outcomes[1].errors.contains("is not valid for the expected name"), "\(outcomes[1])")
        #expect(outcomes[2].status == 64 + 14, "\(outcomes[2])")
        #expect(outcomes[2].errors.contains("UNAVAILABLE"), "\(outcomes[2])")
        #expect(outcomes[2].errors.contains("requires a client certificate"), "\(outcomes[2])")
        #expect(outcomes[3].status == 64 + 14, "\(outcomes[3])")
        #expect(outcomes[3].errors.contains("is not valid for the expected name"), "\(outcomes[3])")
        #expect(outcomes[4].status == 64 + 14, "cleartext to a TLS server: \(outcomes[4])")
        #expect(outcomes[5].status == 0, "--insecure skips the server's certificate: \(outcomes[5])")
        await server.shutdown()
    }
}
