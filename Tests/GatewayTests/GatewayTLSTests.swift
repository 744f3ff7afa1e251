import Foundation
import Gateway
import RPC
import Testing
import TestSupport

/// The gateway terminates TLS (HTTP/1.1 and HTTP/2 by ALPN) and calls the services over mutual
/// TLS (issue 17): curl with --cacert registers an account through it, the accounts service
/// requiring the gateway's client certificate.
@Suite("Gateway over TLS", .serialized)
struct GatewayTLSTests {
    static func curl(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
        let outcome = try await onOwnThread { try runCollecting("/usr/bin/curl", ["-sS", "--max-time", "20"] + arguments, timeout: .seconds(30)) }
        return (outcome.status, String(decoding: outcome.output, as: UTF8.self), String(decoding: outcome.errorOutput, as: UTF8.self))
    }

    @Test("curl --cacert over HTTP/1.1 and HTTP/2 through the gateway's TLS to services that require the gateway's client certificate")
    func httpsToMutualTLSUpstreams() async throws {
        let certificates = try await TestCertificates.directory()
        let serverTLS = ServerTLS(certificateChainFile: certificates + "/server.pem", privateKeyFile: certificates + "/server-key.pem",
                                  clientCAFile: certificates + "/ca.pem")
        let upstreamTLS = ClientTLS(caFile: certificates + "/ca.pem", certificateChainFile: certificates + "/client.pem",
                                    privateKeyFile: certificates + "/client-key.pem")
        let system = try await InProcessSystem(serverTLS: serverTLS, upstreamTLS: upstreamTLS)
        let listener = try GatewayHTTPServer(gateway: system.gateway, tls: ServerTLS(certificateChainFile: certificates + "/server.pem",
                                                                                      privateKeyFile: certificates + "/server-key.pem"))
        let port = try await listener.start(host: "127.0.0.1", port: 0)
        let base = ["--cacert", certificates + "/ca.pem", "-w", "\n%{http_version} %{http_code}"]
        let body = #"{"displayName":"Secure","contactEmail":"ops@secure.example"}"#
        for version in ["--http1.1", "--http2"] {
            let answer = try await Self.curl(base + [version, "-H", "content-type: application/json", "-d", body, "https://localhost:\(port)/v1/accounts"])
            #expect(answer.status == 0, "\(version): \(answer.errors)")
            #expect(answer.output.hasSuffix(version == "--http2" ? "2 201" : "1.1 201") || answer.output.hasSuffix(version == "--http2" ? "2 200" : "1.1 200"),
                    "\(version): \(answer.output)")
            #expect(answer.output.contains("\"adminKey\""), "\(version): \(answer.output)")
        }
        // The gateway's certificate is checked by name: 127.0.0.1 is in its IP SANs too.
        let byAddress = try await Self.curl(base + ["--http2", "https://127.0.0.1:\(port)/healthz"])
        #expect(byAddress.output.hasSuffix("2 200"), "\(byAddress)")
        // A client that does not trust the CA is refused by curl itself.
        let untrusted = try await Self.curl(["--cacert", certificates + "/other-ca.pem", "https://localhost:\(port)/healthz"])
        #expect(untrusted.status == 60, "curl: peer certificate cannot be authenticated: \(untrusted)")
        await listener.shutdown()
        await system.stop()
    }

    @Test("dronectl --transport http over HTTPS: --cacert (or https://) registers an account through the gateway's TLS; an untrusted CA or a wrong name fails with the reason")
    func dronectlOverHTTPS() async throws {
        let certificates = try await TestCertificates.directory()
        let system = try await InProcessSystem()
        let listener = try GatewayHTTPServer(gateway: system.gateway, tls: ServerTLS(certificateChainFile: certificates + "/server.pem",
                                                                                      privateKeyFile: certificates + "/server-key.pem"))
        let port = try await listener.start(host: "127.0.0.1", port: 0)
        let dronectl = repositoryRoot.appendingPathComponent(".build/debug/dronectl").path
        func run(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
            let outcome = try await onOwnThread {
                try runCollecting(dronectl, ["accounts", "register-account", "--transport", "http", "--display-name", "Secure CLI",
                                             "--contact-email", "cli@secure.example"] + arguments,
                                  environment: ["DRONECTL_CONFIG": "/nonexistent/dronectl.json", "PATH": "/usr/bin:/bin"], timeout: .seconds(30))
            }
            return (outcome.status, String(decoding: outcome.output, as: UTF8.self), String(decoding: outcome.errorOutput, as: UTF8.self))
        }
        let ca = ["--cacert", certificates + "/ca.pem"]
        let byFlag = try await run(["--server", "localhost:\(port)"] + ca)
        #expect(byFlag.status == 0, "\(byFlag)")
        #expect(byFlag.output.contains("\"adminKey\""), "\(byFlag)")
        let byScheme = try await run(["--server", "https://127.0.0.1:\(port)"] + ca)
        #expect(byScheme.status == 0, "https:// with the address, in the certificate's IP SANs: \(byScheme)")
        let untrusted = try await run(["--server", "https://localhost:\(port)", "--cacert", certificates + "/other-ca.pem"])
        #expect(untrusted.status == 64 + 14, "\(untrusted)")
        #expect(untrusted.errors.contains("TLS"), "\(untrusted)")
        // Cleartext to the TLS listener: not an answer, an UNAVAILABLE.
        let cleartext = try await run(["--server", "localhost:\(port)"])
        #expect(cleartext.status == 64 + 14, "\(cleartext)")
        // The name: a certificate for "delivery" only (no IP SANs, which NIOSSL would also accept).
        let named = try GatewayHTTPServer(gateway: system.gateway, tls: ServerTLS(certificateChainFile: certificates + "/named-server.pem",
                                                                                   privateKeyFile: certificates + "/named-server-key.pem"))
        let namedPort = try await named.start(host: "127.0.0.1", port: 0)
        let rightName = try await run(["--server", "127.0.0.1:\(namedPort)", "--servername", "delivery"] + ca)
        #expect(rightName.status == 0, "\(rightName)")
        let wrongName = try await run(["--server", "127.0.0.1:\(namedPort)", "--servername", "nobody.example"] + ca)
        #expect(wrongName.status == 64 + 14, "\(wrongName)")
        #expect(wrongName.errors.contains("is not valid for the expected name"), "\(wrongName)")
        await named.shutdown()
        await listener.shutdown()
        await system.stop()
    }

    @Test("a gateway without a client certificate is refused by services that require one: 503 UNAVAILABLE naming the reason")
    func upstreamWithoutClientCertificate() async throws {
        let certificates = try await TestCertificates.directory()
        let serverTLS = ServerTLS(certificateChainFile: certificates + "/server.pem", privateKeyFile: certificates + "/server-key.pem",
                                  clientCAFile: certificates + "/ca.pem")
        let system = try await InProcessSystem(serverTLS: serverTLS, upstreamTLS: ClientTLS(caFile: certificates + "/ca.pem"))
        let answer = await system.http("POST", "/v1/accounts", body: #"{"displayName":"NoCert","contactEmail":"ops@nocert.example"}"#, key: nil)
        #expect(answer.status == 503, "\(answer)")
        #expect(answer.json["code"] as? Int == 14, "\(answer)")
        await system.stop()
    }
}
