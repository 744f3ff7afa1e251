import Foundation
import HTTP2
import InteropTesting
import RPC
import Testing
import TestSupport

/// Each attack nghttp2 1.52 does not stop by itself, made by a raw HTTP/2 client (Python's h2,
/// tools/abuse/h2_abuse.py) against the real server: the attacker gets GOAWAY(ENHANCE_YOUR_CALM)
/// (or REFUSED_STREAM, or a closed idle/slow connection) and a well-behaved client is still served.
@Suite("Abuse protection against a raw HTTP/2 client", .serialized)
struct AbuseTests {
    static let options = RPCServer.Options.defaults {
        $0.limits.handshakeTimeout = .seconds(1)
        $0.limits.idleTimeout = .seconds(1)
        $0.maxConnections = 8
        $0.http2.maxConcurrentStreams = 5
    }

    @Test("every attack case of tools/abuse/h2_abuse.py")
    func attacks() async throws {
        let server = RPCServer(router: interopTestServiceRouter(), options: Self.options)
        let port = try await server.start()
        defer { Task { await server.shutdown() } }
        let script = repositoryRoot.appendingPathComponent("tools/abuse/h2_abuse.py").path
        let output: String
        do {
            output = String(decoding: try await run(projectPython, [script, "--port", String(port)]), as: UTF8.self)
        } catch let failure as CommandFailure {
            Issue.record("abuse cases failed:\n\(failure.output)\(failure.errorOutput)")
            return
        }
        #expect(output.contains("12 passed, 0 failed"), "\(output)")
    }

    @Test("the abuse guard counts within its window")
    func guardWindow() {
        var limits = HTTP2Limits()
        limits.maxPingsPerWindow = 3
        limits.window = .seconds(1)
        var guardState = AbuseGuard(limits: limits)
        let start = ContinuousClock.now
        var verdicts: [AbuseGuard.Verdict] = []
        for index in 0..<4 { verdicts.append(guardState.record(.ping, now: start + .milliseconds(index))) }
        #expect(verdicts.prefix(3).allSatisfy { $0 == .fine })
        #expect(verdicts[3] != .fine)
        // Spread out, the same number of pings is fine: old ones leave the window.
        var later = AbuseGuard(limits: limits)
        var spread: [AbuseGuard.Verdict] = []
        for index in 0..<10 { spread.append(later.record(.ping, now: start + .milliseconds(400 * index))) }
        #expect(spread.allSatisfy { $0 == .fine })
    }
}
