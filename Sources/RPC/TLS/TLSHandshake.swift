#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOSSL

/// Sits right behind the TLS handler: refuses a peer that did not negotiate `h2` through ALPN,
/// completes `handshake` when TLS is up (or fails it with a readable reason), and turns TLS
/// errors into sentences (`TLSDiagnosis`) for the calls and the logs.
final class TLSHandshakeGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

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
    private var completed = false
    private var reported = false

    init(side: Side, peer: String, handshake: EventLoopPromise<Void>?, verification: VerificationNotes, logger: Logger? = nil) {
        self.side = side
        self.peer = peer
        self.handshake = handshake
        self.verification = verification
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = tlsEvent, !completed {
            guard negotiated == "h2" else {
                let got = negotiated.map { "\"\($0)\"" } ?? "no ALPN protocol"
                let message = side == .client
                    ? "TLS: \(peer) did not negotiate HTTP/2 (ALPN \"h2\"; it chose \(got)): not a gRPC server"
                    : "TLS: the client \(peer) did not negotiate HTTP/2 (ALPN \"h2\"; it offered \(got)); closed"
                fail(message)
                context.close(promise: nil)
                return
            }
            completed = true
            handshake?.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(TLSDiagnosis.describe(error, side: side, peer: peer, verification: verification))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !completed { fail("TLS: \(peer) closed the connection during the TLS handshake") }
        context.fireChannelInactive()
    }

    private func fail(_ message: String) {
        guard !reported else { return }
        reported = true
        if !completed {
            completed = true
            handshake?.fail(RPCError(.unavailable, message))
        }
        onFailure?(message)
        logger?.notice("TLS connection refused", metadata: ["peer": "\(peer)", "reason": "\(message)"])
    }
}

/// What the certificate checks saw: BoringSSL reports every failure as CERTIFICATE_VERIFY_FAILED,
/// so the first certificate that failed is noted here to tell an expired certificate from one
/// of an unknown issuer. One per connection, used on its event loop only.
final class VerificationNotes: @unchecked Sendable {
    var firstFailure: String?

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
    static func describe(_ error: Error, side: TLSHandshakeGuard.Side, peer: String, verification: VerificationNotes) -> String {
        let text = String(describing: error)
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            let detail = text.components(separatedBy: ": ").dropFirst().joined(separator: ": ")
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
