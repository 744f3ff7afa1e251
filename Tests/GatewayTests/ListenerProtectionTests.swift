#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Gateway
import NIOCore
import Testing
import TestSupport

/// The listener against slow, idle and too many connections, over real sockets. Timeouts are
/// short here (the configuration's defaults are seconds); every wait is bounded by the socket's
/// receive timeout, so a listener that never closes fails the test instead of hanging it.
@Suite("Gateway listener: header, body and idle timeouts, HTTP/2 preface timeout, connection caps")
struct ListenerProtectionTests {
    /// A gateway listener with `listener` settings and unreachable upstreams.
    /// How long a test waits for something that must happen (an answer, a close) before it fails.
    /// Not a timing requirement: a full `make test` on two cores can hold a healthy answer back for
    /// seconds, so this only bounds a listener that never answers.
    static let patience = 30

    func withListener(_ configure: (inout GatewayConfiguration.Listener) -> Void, _ body: (Int, GatewayHTTPServer) async throws -> Void) async throws {
        var configuration = GatewayConfiguration()
        configuration.port = 0
        for name in configuration.upstreams.keys { configuration.upstreams[name] = "127.0.0.1:1" }
        configure(&configuration.listener)
        let gateway = try Gateway(configuration: configuration)
        let server = try GatewayHTTPServer(gateway: gateway)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        do { try await body(port, server) } catch {
            await server.shutdown()
            await gateway.close()
            throw error
        }
        await server.shutdown()
        await gateway.close()
    }

    /// Everything the peer sends until it closes the connection; throws if it is still open
    /// after the socket's receive timeout.
    func readUntilClosed(_ socket: Int32) async throws -> String {
        try await onOwnThread { try Self.readUntilClosedBlocking(socket) }
    }

    static func readUntilClosedBlocking(_ socket: Int32) throws -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count == 0 { return String(decoding: received, as: UTF8.self) }
            if count < 0 {
                if errno == ECONNRESET { return String(decoding: received, as: UTF8.self) }
                throw TestFailure("the gateway kept the connection open (recv: \(String(cString: strerror(errno)))); got \(String(decoding: received, as: UTF8.self))")
            }
            received += buffer[0..<count]
        }
    }

    func send(_ socket: Int32, _ text: String) {
        _ = text.withCString { Glibc.send(socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    @Test("half a request head: 408 naming the timeout, then the connection closes")
    func slowHead() async throws {
        try await withListener({ $0.headerTimeoutSeconds = 0.3 }) { port, _ in
            let socket = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(socket) }
            send(socket, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            let answer = try await readUntilClosed(socket)
            #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
            #expect(answer.contains("request head did not arrive"), "\(answer)")
        }
    }

    @Test("a body slower than the body timeout: 408, then the connection closes")
    func slowBody() async throws {
        try await withListener({ $0.bodyTimeoutSeconds = 0.3 }) { port, _ in
            let socket = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(socket) }
            send(socket, "POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"displayName\":")
            let answer = try await readUntilClosed(socket)
            #expect(answer.hasPrefix("HTTP/1.1 408") && answer.contains("request body did not arrive"), "\(answer)")
        }
    }

    @Test("a keep-alive connection with no request is closed after the idle timeout, after its answers")
    func idleConnection() async throws {
        try await withListener({ $0.idleTimeoutSeconds = 0.3 }) { port, _ in
            let socket = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(socket) }
            send(socket, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = try await readUntilClosed(socket)
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix("ok\n"), "the answer, then the close: \(answer)")
        }
    }

    @Test("a connection that sends nothing, or part of the HTTP/2 preface, is closed after the header timeout")
    func silentAndHalfPreface() async throws {
        try await withListener({ $0.headerTimeoutSeconds = 0.3 }) { port, _ in
            let silent = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(silent) }
            let halfPreface = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(halfPreface) }
            send(halfPreface, "PRI * HTTP/2.0\r\n\r\n")
            #expect(try await readUntilClosed(silent).isEmpty)
            #expect(try await readUntilClosed(halfPreface).isEmpty)
        }
    }

    @Test("an HTTP/2 connection that sends the preface but no SETTINGS, and one idle without streams, are closed")
    func http2HandshakeAndIdle() async throws {
        try await withListener({ $0.headerTimeoutSeconds = 0.3; $0.idleTimeoutSeconds = 0.3 }) { port, _ in
            let socket = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(socket) }
            send(socket, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            _ = try await readUntilClosed(socket)  // our SETTINGS, maybe a GOAWAY, then the close
        }
    }

    @Test("200 connections that each sent half a request head are all closed by the header timeout")
    func manySlowHeads() async throws {
        try await withListener({ $0.headerTimeoutSeconds = 0.5 }) { port, server in
            var sockets: [Int32] = []
            defer { for socket in sockets { close(socket) } }
            for _ in 0..<200 {
                let socket = try connectLoopback(port: port, receiveTimeout: Self.patience)
                send(socket, "GET /v1/deliveries HTTP/1.1\r\nHost: x\r\n")
                sockets.append(socket)
            }
            for socket in sockets { #expect(try await readUntilClosed(socket).hasPrefix("HTTP/1.1 408")) }
            // The gateway let go of them too.
            let deadline = ContinuousClock.now + .seconds(Self.patience)
            while server.openConnections > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(server.openConnections == 0)
        }
    }

    @Test("connections over the per-address cap are closed on accept; the ones inside it are served; a freed place is taken again")
    func perAddressCap() async throws {
        try await withListener({ $0.maxConnectionsPerAddress = 3 }) { port, _ in
            var admitted: [Int32] = []
            defer { for socket in admitted { close(socket) } }
            for _ in 0..<3 { admitted.append(try connectLoopback(port: port, receiveTimeout: Self.patience)) }
            // Each of the three is served (which also means the listener has counted all three).
            for socket in admitted {
                send(socket, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await readAnswer(socket).hasPrefix("HTTP/1.1 200"))
            }
            let refused = try connectLoopback(port: port, receiveTimeout: Self.patience)
            send(refused, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await readUntilClosed(refused).isEmpty, "closed without an answer")
            close(refused)
            close(admitted.removeLast())
            // The closed one's place is free again once the gateway has seen it close.
            let deadline = ContinuousClock.now + .seconds(Self.patience)
            var served = false
            while !served, ContinuousClock.now < deadline {
                let again = try connectLoopback(port: port, receiveTimeout: Self.patience)
                send(again, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                served = (try? await readAnswer(again))?.hasPrefix("HTTP/1.1 200") ?? false
                if served { admitted.append(again) } else { close(again) }
            }
            #expect(served)
        }
    }

    @Test("the total cap holds for every client together")
    func totalCap() async throws {
        try await withListener({ $0.maxConnections = 2 }) { port, _ in
            let first = try connectLoopback(port: port, receiveTimeout: Self.patience)
            let second = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(first); close(second) }
            for socket in [first, second] {
                send(socket, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await readAnswer(socket).hasPrefix("HTTP/1.1 200"))
            }
            let third = try connectLoopback(port: port, receiveTimeout: Self.patience)
            defer { close(third) }
            #expect(try await readUntilClosed(third).isEmpty)
        }
    }

    /// One whole HTTP/1.1 answer with a Content-Length body (the connection stays open).
    func readAnswer(_ socket: Int32) async throws -> String {
        try await onOwnThread { try Self.readAnswerBlocking(socket) }
    }

    static func readAnswerBlocking(_ socket: Int32) throws -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let text = String(decoding: received, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let head = text[..<end.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if text.utf8.count - text[..<end.upperBound].utf8.count >= length { return text }
            }
            let count = recv(socket, &buffer, buffer.count, 0)
            if count == 0 { throw TestFailure("the gateway closed the connection before a whole answer: \(text)") }
            if count < 0 { throw TestFailure("no whole answer (recv: \(String(cString: strerror(errno)))): \(text)") }
            received += buffer[0..<count]
        }
    }
}

@Suite("HTTP/1.1 read deadlines (the state machine alone)")
struct HTTP1ReadDeadlinesTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }

    @Test("a head must arrive within the header timeout of its first byte, a body within the body timeout of its head")
    func headAndBody() {
        var deadlines = HTTP1ReadDeadlines(header: .seconds(10), body: .seconds(30), idle: .seconds(60), now: start)
        deadlines.bytesArrived(at: at(5))
        #expect(deadlines.check(at: at(14.9)) == .checkAgain(at: at(15)))
        #expect(deadlines.check(at: at(15)) == .expired(.request("the request head did not arrive within 10 s")))
        deadlines.headReceived(at: at(14))
        #expect(deadlines.check(at: at(43.9)) == .checkAgain(at: at(44)))
        #expect(deadlines.check(at: at(44)) == .expired(.request("the request body did not arrive within 30 s")))
    }

    @Test("idle from the last answer; never while answering; the timer checks at least every tick")
    func idleAndAnswering() {
        var deadlines = HTTP1ReadDeadlines(header: .seconds(10), body: .seconds(30), idle: .seconds(60), now: start)
        #expect(deadlines.check(at: at(1)) == .checkAgain(at: at(11)), "no deadline sooner than a tick away")
        #expect(deadlines.check(at: at(60)) == .expired(.idle))
        deadlines.bytesArrived(at: at(2))
        deadlines.headReceived(at: at(2))
        deadlines.requestEnded()
        #expect(deadlines.check(at: at(500)) == .checkAgain(at: at(510)), "a long answer (a stream) is not idle")
        deadlines.answerFinished(at: at(500))
        #expect(deadlines.check(at: at(559)) == .checkAgain(at: at(560)))
        #expect(deadlines.check(at: at(560)) == .expired(.idle))
    }

    @Test("pipelined requests: idle only once every one is answered")
    func pipelined() {
        var deadlines = HTTP1ReadDeadlines(header: .seconds(1), body: .seconds(1), idle: .seconds(1), now: start)
        for _ in 0..<2 {
            deadlines.bytesArrived(at: at(0))
            deadlines.headReceived(at: at(0))
            deadlines.requestEnded()
        }
        deadlines.answerFinished(at: at(0.5))
        #expect(deadlines.check(at: at(5)) == .checkAgain(at: at(6)))
        deadlines.answerFinished(at: at(5))
        #expect(deadlines.check(at: at(6)) == .expired(.idle))
    }
}
