#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Sits right behind the TLS handler: refuses a peer that did not negotiate `h2` through ALPN,
/// completes `handshake` when TLS is up (or fails it with a readable reason), and turns TLS
/// errors into sentences (`TLSDiagnosis`) for the calls and the logs. The HTTP/2 layer's first
/// frames (its SETTINGS, written when the TCP connection opens) are held here until ALPN said
/// `h2`, so a peer that did not negotiate HTTP/2 never receives a byte of it.
final class TLSHandshakeGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Side { case client, server }

    let side: Side
    /// Who is at the other end, for messages ("the server at 127.0.0.1:50051").
    let peer: String
    let handshake: EventLoopPromise<Void>?
    let verification: VerificationNotes
    /// Told why the connection failed after the handshake (TLS 1.3 clients learn that the
    /// server refused their certificate only then).
    var onFailure: ((String) -> Void)?
    let logger: Logger?
    /// Whether this end presents a certificate (for the client's guesses when a server hangs up
    /// without an alert, as grpcio's does).
    let presentsCertificate: Bool
    private var completed = false
    private var reported = false
    /// Writes (and whether a flush came) before ALPN said h2.
    private var held: [(data: NIOAny, promise: EventLoopPromise<Void>?)] = []
    private var heldFlush = false
    private var released = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard released else { return held.append((data, promise)) }
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard released else { heldFlush = true; return }
        context.flush()
    }

    private func release(context: ChannelHandlerContext) {
        released = true
        let writes = held
        held = []
        for write in writes { context.write(write.data, promise: write.promise) }
        if heldFlush { context.flush() }
    }

    private func dropHeld(_ message: String) {
        let writes = held
        held = []
        for write in writes { write.promise?.fail(RPCError(.unavailable, message)) }
    }

    /// The ALPN protocol the connection must negotiate: "h2" for gRPC, "http/1.1" for
    /// dronectl's calls to the gateway.
    let applicationProtocol: String

    init(side: Side, peer: String, handshake: EventLoopPromise<Void>?, verification: VerificationNotes, logger: Logger? = nil,
         presentsCertificate: Bool = false, applicationProtocol: String = "h2") {
        self.applicationProtocol = applicationProtocol
        self.presentsCertificate = presentsCertificate
        self.side = side
        self.peer = peer
        self.handshake = handshake
        self.verification = verification
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = tlsEvent, !completed {
            // A server without ALPN speaks HTTP/1.1 by default (RFC 7301), so that one may be absent.
            guard negotiated == applicationProtocol || (negotiated == nil && applicationProtocol == "http/1.1") else {
                let got = negotiated.map { "\"\($0)\"" } ?? "no ALPN protocol"
                let message = applicationProtocol != "h2"
                    ? "TLS: \(peer) did not negotiate ALPN \"\(applicationProtocol)\" (it chose \(got))"
                    : side == .client
                    ? "TLS: \(peer) did not negotiate HTTP/2 (ALPN \"h2\"; it chose \(got)): not a gRPC server"
                    : "TLS: the client \(peer) did not negotiate HTTP/2 (ALPN \"h2\"; it offered \(got)); closed"
                fail(message, refused: true)
                context.close(promise: nil)
                return
            }
            completed = true
            release(context: context)
            handshake?.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(TLSDiagnosis.describe(error, side: side, peer: peer, verification: verification, afterHandshake: completed,
                                   presentsCertificate: presentsCertificate), refused: !completed)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !completed { fail("TLS: \(peer) closed the connection during the TLS handshake", refused: true) }
        context.fireChannelInactive()
    }

    /// - Parameter refused: the handshake failed or ALPN was wrong (logged as a refusal); else a
    ///   TLS error on a connection that was up (logged at debug: a peer leaving without
    ///   close_notify is common).
    private func fail(_ message: String, refused: Bool) {
        verification.failure = message
        dropHeld(message)
        guard !reported else { return }
        reported = true
        if !completed {
            completed = true
            handshake?.fail(RPCError(.unavailable, message))
        }
        onFailure?(message)
        if refused {
            logger?.notice("TLS connection refused", metadata: ["peer": "\(peer)", "reason": "\(message)"])
        } else {
            logger?.debug("TLS connection failed", metadata: ["peer": "\(peer)", "reason": "\(message)"])
        }
    }
}

/// What the certificate checks saw: BoringSSL reports every failure as CERTIFICATE_VERIFY_FAILED,
/// so the first certificate that failed is noted here to tell an expired certificate from one
/// of an unknown issuer. One per connection, used on its event loop only.
final class VerificationNotes: @unchecked Sendable {
    var firstFailure: String?
    /// Why the connection failed (set by the guard), for the code that opened it.
    var failure: String?

    /// A NIOSSL verification callback that keeps BoringSSL's verdict and notes why it failed.
    func callback() -> NIOSSLVerificationCallback {
        { [self] result, certificate in
            if case .failed = result, firstFailure == nil { firstFailure = Self.explain(certificate) }
            return result
        }
    }

    static func explain(_ certificate: NIOSSLCertificate) -> String {
        let now = time(nil)
        let commonName = certificate.subjectName.first { $0.type == .commonName }?.value ?? "no common name"
        let issuer = certificate.issuerName.first { $0.type == .commonName }?.value ?? "unnamed issuer"
        let subject = "CN=\(commonName), issued by CN=\(issuer)"
        if certificate.notValidAfter < now { return "the certificate expired on \(date(certificate.notValidAfter)) (\(subject))" }
        if certificate.notValidBefore > now { return "the certificate is not valid before \(date(certificate.notValidBefore)) (\(subject))" }
        return "it is not issued by a trusted CA (\(subject))"
    }

    static func date(_ time: time_t) -> String {
        var copy = time
        var parts = tm()
        gmtime_r(&copy, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// TLS failures in words: what went wrong and what to change.
enum TLSDiagnosis {
    static func describe(_ error: Error, side: TLSHandshakeGuard.Side, peer: String, verification: VerificationNotes,
                         afterHandshake: Bool = false, presentsCertificate: Bool = false) -> String {
        let text = String(describing: error)
        if side == .client, afterHandshake, let ssl = error as? NIOSSLError, case .uncleanShutdown = ssl {
            // TLS 1.3: a server checks the client's certificate after the client's handshake is
            // done; BoringSSL servers say why in an alert, grpcio's hangs up without one.
            return presentsCertificate
                ? "TLS: \(peer) closed the connection right after the handshake without saying why: it may not accept our client certificate (expired, or not issued by a CA it trusts)"
                : "TLS: \(peer) closed the connection right after the handshake without saying why: it may require a client certificate (mutual TLS), and none was presented"
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            // "NIOSSLExtraError.failedToValidateHostname: Couldn't find NAME in certificate from peer"
            let detail = text.firstIndex(of: ":").map { String(text[text.index(after: $0)...].drop { $0 == " " }) } ?? text
            return "TLS: the certificate of \(peer) is not valid for the expected name (\(detail)); set the name to expect with the server-name setting (--servername)"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            let whose = side == .client ? "the certificate of \(peer)" : "the client certificate of \(peer)"
            return "TLS: \(whose) was rejected: \(verification.firstFailure ?? "it does not verify against the configured CA")"
        }
        if side == .client && text.contains("CERTIFICATE_REQUIRED") {
            return "TLS: \(peer) requires a client certificate (mutual TLS) and none was presented"
        }
        if side == .server && text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") {
            return "TLS: the client \(peer) presented no certificate, and this server requires one (mutual TLS)"
        }
        if text.contains("ALERT_CERTIFICATE_EXPIRED") { return "TLS: \(peer) refused our certificate: it has expired" }
        if text.contains("ALERT_UNKNOWN_CA") { return "TLS: \(peer) refused our certificate: it is not issued by a CA that \(peer) trusts" }
        if text.contains("ALERT_BAD_CERTIFICATE") { return "TLS: \(peer) refused our certificate (bad certificate)" }
        if side == .client && text.contains("ALERT_HANDSHAKE_FAILURE") {
            return "TLS: \(peer) refused the handshake (does it require a client certificate, or other TLS versions or ciphers?)"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("PACKET_LENGTH_TOO_LONG") {
            return side == .client ? "TLS: \(peer) does not speak TLS (a cleartext server?)" : "TLS: the client \(peer) does not speak TLS (cleartext on a TLS port)"
        }
        if text.contains("NO_APPLICATION_PROTOCOL") || text.contains("ALERT_NO_APPLICATION_PROTOCOL") {
            return "TLS: \(peer) and this end have no ALPN protocol in common (gRPC needs \"h2\")"
        }
        if let ssl = error as? NIOSSLError, case .uncleanShutdown = ssl { return "TLS: \(peer) closed the connection without a TLS close_notify" }
        return "TLS: \(text)"
    }
}

/// The TLS handlers of a connection, with a verification callback that notes why a certificate
/// failed (`VerificationNotes`). NIOSSL marks the initializers that take such a callback
/// deprecated in favour of callbacks that replace BoringSSL's verification altogether; these
/// protocols reach them without a warning, and BoringSSL's verdict is kept unchanged.
enum TLSHandlers {
    static func client(context: NIOSSLContext, serverHostname: String?, notes: VerificationNotes) throws -> NIOSSLClientHandler {
        try (NIOSSLClientHandler.self as any ObservedClientHandler.Type)
            .init(context: context, serverHostname: serverHostname, verificationCallback: notes.callback()) as! NIOSSLClientHandler
    }

    static func server(context: NIOSSLContext, notes: VerificationNotes) throws -> NIOSSLServerHandler {
        try (NIOSSLServerHandler.self as any ObservedServerHandler.Type)
            .init(context: context, verificationCallback: notes.callback()) as! NIOSSLServerHandler
    }
}

private protocol ObservedClientHandler {
    init(context: NIOSSLContext, serverHostname: String?, verificationCallback: NIOSSLVerificationCallback?) throws
}

private protocol ObservedServerHandler {
    init(context: NIOSSLContext, verificationCallback: NIOSSLVerificationCallback?) throws
}

extension NIOSSLClientHandler: ObservedClientHandler {}
extension NIOSSLServerHandler: ObservedServerHandler {}

/// TLS for a client connection that is not an `RPCClient`'s (dronectl's HTTP/1.1 calls to the
/// gateway), with the same checks and the same readable failures: the server's certificate
/// chain and name, a client certificate when configured, the ALPN protocol.
public struct ClientTLSConnector: Sendable {
    let context: NIOSSLContext
    let serverHostname: String?
    let applicationProtocol: String
    let presentsCertificate: Bool

    /// - Parameters:
    ///   - host: the host connected to; its name is checked unless `tls.serverName` is set (an
    ///     IP address is checked against the certificate's IP SANs, without SNI).
    ///   - applicationProtocol: offered through ALPN and required back ("http/1.1" may also be
    ///     answered with no ALPN at all).
    public init(_ tls: ClientTLS, host: String, applicationProtocol: String) throws {
        var tls = tls
        tls.applicationProtocols = [applicationProtocol]
        context = try tls.makeContext()
        serverHostname = tls.serverHostname(connectingTo: host)
        self.applicationProtocol = applicationProtocol
        presentsCertificate = tls.certificateChainFile != nil
    }

    /// Puts TLS in front of `channel`'s pipeline (call it first, from the channel initializer).
    /// The future succeeds once the handshake is done, or fails with an UNAVAILABLE `RPCError`
    /// naming the reason (`peer` names the server in it).
    public func addHandlers(to channel: Channel, peer: String) throws -> EventLoopFuture<Void> {
        let handshake = channel.eventLoop.makePromise(of: Void.self)
        let notes = VerificationNotes()
        let guardHandler = TLSHandshakeGuard(side: .client, peer: peer, handshake: handshake, verification: notes,
                                             presentsCertificate: presentsCertificate, applicationProtocol: applicationProtocol)
        do {
            try channel.pipeline.syncOperations.addHandler(TLSHandlers.client(context: context, serverHostname: serverHostname, notes: notes))
            try channel.pipeline.syncOperations.addHandler(guardHandler)
        } catch {
            handshake.fail(error)
            throw error
        }
        return handshake.futureResult
    }
}
