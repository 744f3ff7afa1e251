import Foundation
import GRPCProtos
import InteropTesting
import NIOCore
import NIOPosix
import NIOSSL
@testable import RPC
import Synchronization
import Testing
import TestSupport

/// TLS on the RPC server and client (issue 17): ALPN h2, the server's name checked, mutual TLS,
/// certificates read again when they change, and each failure as an UNAVAILABLE that says why.
/// Certificates come from tools/make-certs.sh.
@Suite("TLS and mutual TLS", .serialized)
struct TLSTests {
    static func serverTLS(_ name: String = "server", clientCA: String? = nil) async throws -> ServerTLS {
        ServerTLS(certificateChainFile: try await TestCertificates.path("\(name).pem"), privateKeyFile: try await TestCertificates.path("\(name)-key.pem"),
                  clientCAFile: try await clientCA.asyncMap { try await TestCertificates.path($0) })
    }

    static func clientTLS(ca: String = "ca.pem", certificate: String? = nil, serverName: String? = nil) async throws -> ClientTLS {
        ClientTLS(caFile: try await TestCertificates.path(ca),
                  certificateChainFile: try await certificate.asyncMap { try await TestCertificates.path("\($0).pem") },
                  privateKeyFile: try await certificate.asyncMap { try await TestCertificates.path("\($0)-key.pem") },
                  serverName: serverName)
    }

    static func startServer(_ tls: ServerTLS?, configure: (inout RPCServer.Options) -> Void = { _ in }) async throws -> (RPCServer, Int) {
        let server = RPCServer(router: interopTestServiceRouter(), options: .defaults {
            $0.tls = tls
            $0.shutdownGracePeriod = .milliseconds(200)
            configure(&$0)
        })
        return (server, try await server.start())
    }

    /// One UnaryCall through a new client; the error the call ended with, or nil on success.
    static func call(port: Int, host: String = "127.0.0.1", tls: ClientTLS?) async -> RPCError? {
        let client = RPCClient(host: host, port: port, options: .defaults { $0.tls = tls; $0.connectTimeout = .seconds(5) })
        defer { Task { await client.close() } }
        do {
            var request = Grpc.Testing.SimpleRequest()
            request.responseSize = 3
            let response = try await client.unary(Methods.UnaryCall.self, request, options: CallOptions(timeout: .seconds(10)))
            #expect(response.payload?.body.count == 3)
            return nil
        } catch let error as RPCError {
            return error
        } catch {
            return RPCError(.unknown, "not an RPCError: \(error)")
        }
    }

    @Test("a call over TLS: the server's certificate verified against the CA, by IP SAN and by name with the server-name override")
    func callOverTLS() async throws {
        let (server, port) = try await Self.startServer(try await Self.serverTLS())
        #expect(await Self.call(port: port, tls: try await Self.clientTLS()) == nil)
        #expect(await Self.call(port: port, tls: try await Self.clientTLS(serverName: "delivery")) == nil)
        #expect(await Self.call(port: port, host: "localhost", tls: try await Self.clientTLS()) == nil)
        await server.shutdown()
    }

    @Test("cleartext stays the default, and each side refuses the other's mistake clearly")
    func cleartextAndTLSMismatch() async throws {
        let (plain, plainPort) = try await Self.startServer(nil)
        #expect(await Self.call(port: plainPort, tls: nil) == nil)
        let error = await Self.call(port: plainPort, tls: try await Self.clientTLS())
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("does not speak TLS") == true, "\(String(describing: error))")
        await plain.shutdown()
    }

    @Test("failures say why: unknown CA, wrong name, expired certificate")
    func serverCertificateFailures() async throws {
        let (server, port) = try await Self.startServer(try await Self.serverTLS())
        let wrongCA = await Self.call(port: port, tls: try await Self.clientTLS(ca: "other-ca.pem"))
        #expect(wrongCA?.code == .unavailable)
        #expect(wrongCA?.message.contains("TLS: the certificate of the server at 127.0.0.1:\(port)") == true, "\(String(describing: wrongCA))")
        #expect(wrongCA?.message.contains("was rejected: it is not issued by a trusted CA") == true, "\(String(describing: wrongCA))")

        await server.shutdown()

        // A certificate for the name "delivery" alone (no IP SANs; NIOSSL accepts a certificate for
        // the name asked for or for the address connected to).
        let (named, namedPort) = try await Self.startServer(try await Self.serverTLS("named-server"))
        #expect(await Self.call(port: namedPort, tls: try await Self.clientTLS(serverName: "delivery")) == nil)
        let wrongName = await Self.call(port: namedPort, tls: try await Self.clientTLS(serverName: "not-a-service.example"))
        #expect(wrongName?.code == .unavailable)
        #expect(wrongName?.message.contains("is not valid for the expected name") == true, "\(String(describing: wrongName))")
        #expect(wrongName?.message.contains("not-a-service.example") == true, "\(String(describing: wrongName))")
        let byAddress = await Self.call(port: namedPort, tls: try await Self.clientTLS())
        #expect(byAddress?.message.contains("is not valid for the expected name") == true, "\(String(describing: byAddress))")
        await named.shutdown()

        let (expired, expiredPort) = try await Self.startServer(try await Self.serverTLS("expired-server"))
        let error = await Self.call(port: expiredPort, tls: try await Self.clientTLS())
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("was rejected: the certificate expired on 2020-02-01T00:00:00Z") == true, "\(String(describing: error))")
        await expired.shutdown()
    }

    @Test("mutual TLS: a client certificate of the CA is served; none, another CA's, or an expired one is refused with the reason")
    func mutualTLS() async throws {
        let (server, port) = try await Self.startServer(try await Self.serverTLS(clientCA: "ca.pem"))
        #expect(await Self.call(port: port, tls: try await Self.clientTLS(certificate: "client")) == nil)

        let none = await Self.call(port: port, tls: try await Self.clientTLS())
        #expect(none?.code == .unavailable)
        #expect(none?.message.contains("requires a client certificate (mutual TLS) and none was presented") == true, "\(String(describing: none))")

        let stranger = await Self.call(port: port, tls: try await Self.clientTLS(certificate: "other-client"))
        #expect(stranger?.code == .unavailable)
        #expect(stranger?.message.contains("refused our certificate: it is not issued by a CA that") == true, "\(String(describing: stranger))")

        let expired = await Self.call(port: port, tls: try await Self.clientTLS(certificate: "expired-client"))
        #expect(expired?.code == .unavailable)
        #expect(expired?.message.contains("refused our certificate: it has expired") == true, "\(String(describing: expired))")
        await server.shutdown()
    }

    @Test("ALPN: a TLS server that does not choose h2 is no gRPC server; a TLS client that does not offer h2 is closed before any HTTP/2")
    func alpnIsRequired() async throws {
        var http1Only = try await Self.serverTLS()
        http1Only.applicationProtocols = ["http/1.1"]
        let (server, port) = try await Self.startServer(http1Only)
        var offersBoth = try await Self.clientTLS()
        offersBoth.applicationProtocols = ["h2", "http/1.1"]
        let error = await Self.call(port: port, tls: offersBoth)
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("did not negotiate HTTP/2 (ALPN \"h2\"; it chose \"http/1.1\")") == true, "\(String(describing: error))")
        await server.shutdown()

        // Our server against a client offering only http/1.1: the connection closes and not one
        // HTTP/2 byte (the server's SETTINGS) reaches the client.
        let (h2Server, h2Port) = try await Self.startServer(try await Self.serverTLS())
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(try await TestCertificates.path("ca.pem"))
        configuration.applicationProtocols = ["http/1.1"]
        let context = try NIOSSLContext(configuration: configuration)
        let received = ByteCounter()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    try channel.pipeline.syncOperations.addHandler(received)
                }
            }
            .connect(host: "127.0.0.1", port: h2Port).get()
        try await withTimeout(.seconds(10)) { try await channel.closeFuture.get() }
        #expect(received.bytes.withLock { $0 } == 0, "the server spoke HTTP/2 to a client that did not negotiate it")
        await h2Server.shutdown()
    }

    @Test("certificate rotation: new connections get the new certificate, open ones keep working, no restart")
    func rotation() async throws {
        let directory = try makeTemporaryDirectory("tls-rotation")
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("tls.crt").path
        let key = directory.appendingPathComponent("tls.key").path
        func install(_ name: String) async throws {
            // As Kubernetes and certbot do: write beside, then rename over (new inode).
            for (source, target) in [("\(name).pem", certificate), ("\(name)-key.pem", key)] {
                let staged = target + ".new"
                try? FileManager.default.removeItem(atPath: staged)
                try FileManager.default.copyItem(atPath: try await TestCertificates.path(source), toPath: staged)
                #expect(rename(staged, target) == 0)
            }
        }
        try await install("server")
        let (server, port) = try await Self.startServer(ServerTLS(certificateChainFile: certificate, privateKeyFile: key))
        let openTLS = try await Self.clientTLS()
        let open = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.tls = openTLS })
        _ = try await open.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(10)))
        #expect(server.tlsContext?.reloads == 0)

        try await install("other-server")
        let oldCA = await Self.call(port: port, tls: try await Self.clientTLS())
        #expect(oldCA?.message.contains("not issued by a trusted CA") == true, "\(String(describing: oldCA))")
        #expect(await Self.call(port: port, tls: try await Self.clientTLS(ca: "other-ca.pem", serverName: "localhost")) == nil)
        #expect(server.tlsContext?.reloads == 1)
        // The connection opened before the rotation still carries calls.
        _ = try await open.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(10)))

        // A half-written rotation (a key that does not match the certificate) keeps the last good pair.
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: try await TestCertificates.path("client-key.pem"), toPath: key)
        #expect(await Self.call(port: port, tls: try await Self.clientTLS(ca: "other-ca.pem", serverName: "localhost")) == nil)
        #expect(server.tlsContext?.lastReloadError?.contains(key) == true, "\(String(describing: server.tlsContext?.lastReloadError))")
        await open.close()
        await server.shutdown()
    }

    @Test("a bad TLS file is a clear error at start (server) or on the first call (client)")
    func badFiles() async throws {
        let missing = RPCServer(router: interopTestServiceRouter(), options: .defaults {
            $0.tls = ServerTLS(certificateChainFile: "/nonexistent/server.pem", privateKeyFile: "/nonexistent/key.pem")
        })
        do {
            _ = try await missing.start()
            Issue.record("a server with a missing certificate file started")
        } catch {
            #expect("\(error)".contains("cannot read the certificate chain file /nonexistent/server.pem"), "\(error)")
        }
        let (server, port) = try await Self.startServer(try await Self.serverTLS())
        let error = await Self.call(port: port, tls: ClientTLS(caFile: "/nonexistent/ca.pem"))
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("TLS configuration: cannot read the CA file /nonexistent/ca.pem") == true, "\(String(describing: error))")
        await server.shutdown()
    }

    @Test("the rapid-reset and ping-flood guards hold over TLS (tools/abuse/h2_abuse.py through TLS)")
    func abuseOverTLS() async throws {
        let (server, port) = try await Self.startServer(try await Self.serverTLS()) {
            $0.limits.handshakeTimeout = .seconds(1)
            $0.limits.idleTimeout = .seconds(1)
            $0.maxConnections = 8
            $0.http2.maxConcurrentStreams = 5
        }
        let script = repositoryRoot.appendingPathComponent("tools/abuse/h2_abuse.py").path
        let ca = try await TestCertificates.path("ca.pem")
        let outcome = try await onOwnThread {
            try runCollecting(projectPython, [script, "--port", String(port), "--tls-ca", ca,
                                              "--case", "rapid_reset,ping_flood,settings_flood"], timeout: .seconds(120))
        }
        let output = String(decoding: outcome.output, as: UTF8.self)
        #expect(outcome.status == 0, "\(output)\(String(decoding: outcome.errorOutput, as: UTF8.self))")
        #expect(output.contains("3 passed, 0 failed"), "\(output)")
        #expect(output.contains("over TLS"), "\(output)")
        await server.shutdown()
    }
}

/// Counts the bytes a channel receives.
final class ByteCounter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let bytes = Mutex(0)
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let count = unwrapInboundIn(data).readableBytes
        bytes.withLock { $0 += count }
    }
}

func withTimeout(_ limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw RPCError(.deadlineExceeded, "timed out after \(limit)")
        }
        try await group.next()
        group.cancelAll()
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
