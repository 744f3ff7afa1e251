import Foundation
import Gateway
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The gateway writes its HTTP/1.x answers itself (not through SwiftNIO's response encoder), so
/// these check the framing a client relies on, byte by byte, against the real listener: a
/// request that is not HTTP gets a 400 that says why, after the answers owed to the requests
/// before it, and the connection closes; HTTP/1.0 closes unless asked to keep alive; HEAD gets
/// the length of the body but no body.
@Suite("Gateway HTTP/1.x: answer framing and malformed requests")
struct HTTP1FramingTests {
    @Test("bytes that are not HTTP get 400 with the reason, after the requests before them, then the connection closes")
    func malformedRequestAfterAValidOne() async throws {
        try await withUnreachableUpstreamsGateway { port in
            let (bytes, closed) = try await Self.exchange(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE / HTTP/1.1\r\n\r\n")
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(closed, "the connection stays open after a malformed request")
            // Each answer starts a line (the refusal's own text mentions HTTP/1.1 too).
            let answers = ("\n" + text).components(separatedBy: "\nHTTP/1.1 ").dropFirst()
            #expect(answers.count == 2, "answers: \(text)")
            #expect(answers.first?.hasPrefix("200 OK\r\n") == true)
            let refusal = answers.dropFirst().first ?? ""
            #expect(refusal.hasPrefix("400 Bad Request\r\n"))
            #expect(refusal.contains("connection: close\r\n"))
            #expect(refusal.contains("not valid HTTP/1.1"))
            // The stated length is the body's length.
            if let split = refusal.range(of: "\r\n\r\n"), let length = Self.contentLength(refusal) {
                #expect(refusal[split.upperBound...].utf8.count == length)
            } else {
                Issue.record("no head or no content-length in \(refusal)")
            }
        }
    }

    @Test("HTTP/1.0 without keep-alive: the answer is HTTP/1.0 and the connection closes after it")
    func http10Closes() async throws {
        try await withUnreachableUpstreamsGateway { port in
            let (bytes, closed) = try await Self.exchange(port: port, "GET /healthz HTTP/1.0\r\n\r\n")
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(closed)
            #expect(text.hasPrefix("HTTP/1.0 200 OK\r\n"))
            #expect(text.contains("connection: close\r\n"))
            #expect(text.hasSuffix("\r\n\r\nok\n"))
        }
    }

    @Test("HEAD: the length of the body that GET would send, and no body")
    func headHasLengthButNoBody() async throws {
        try await withUnreachableUpstreamsGateway { port in
            let (bytes, _) = try await Self.exchange(port: port, "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(Self.contentLength(text) == 3)
            #expect(text.hasSuffix("\r\n\r\n"), "a body followed the head: \(text)")
        }
    }

    // MARK: Helpers

    static func contentLength(_ answer: String) -> Int? {
        guard let line = answer.components(separatedBy: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }) else { return nil }
        return Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
    }

    /// Writes `request` on a fresh connection and reads until the server closes it or 3 seconds
    /// pass without a byte; returns what arrived and whether the server closed.
    static func exchange(port: Int, _ request: String) async throws -> (bytes: [UInt8], closed: Bool) {
        try await onOwnThread { try exchangeBlocking(port: port, request) }
    }

    static func exchangeBlocking(port: Int, _ request: String) throws -> (bytes: [UInt8], closed: Bool) {
        let socket = try connectLoopback(port: port, receiveTimeout: 3)
        defer { close(socket) }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (received, true) }
            if count < 0 { return (received, false) }  // timed out: still open
            received += buffer[0..<count]
        }
    }
}
