import Foundation
import GRPCProtos
import RPC
import RPCServices
import ServiceKit
import Testing

/// A span's times: read on the monotonic clock the RPC runtime already reads per call
/// (`CallClock`), and placed on the wall clock by `Tracing.wallClock(monotonic:)`.
@Suite("Span times: on the wall clock, around the call they describe")
struct SpanClockTests {
    /// Nanoseconds since 1970 from Foundation's clock (not the one `Tracing` reads).
    static func wallNow() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1e9) }

    @Test("Tracing.now() is the wall clock (within 5 ms of Foundation's, which reads it separately)")
    func nowIsWallClock() {
        let before = Self.wallNow()
        let now = Tracing.now()
        let after = Self.wallNow()
        #expect(now + 5_000_000 >= before && now <= after + 5_000_000, "Tracing.now() \(now), Foundation \(before) to \(after)")
    }

    @Test("a server span starts when its call starts and ends after its handler, on the wall clock")
    func serverSpanTimes() async throws {
        let recorder = SpanRecorder(host: "127.0.0.1", port: 1, serviceName: "clock-test")  // never started: spans stay queued
        var router = Router()
        router.unary(Grpc.Health.V1.Health.Method.Check.self) { _, _ in
            try await Task.sleep(for: .milliseconds(30))
            return Grpc.Health.V1.HealthCheckResponse()
        }
        let server = RPCServer(router: router, options: .defaults { $0.interceptors = [TracingServerInterceptor(recorder: recorder)] })
        let client = RPCClient(host: "127.0.0.1", port: try await server.start())
        let before = Self.wallNow()
        _ = try await Grpc.Health.V1.Health.Client(client).check(Grpc.Health.V1.HealthCheckRequest())
        let after = Self.wallNow()
        await client.close()
        await server.shutdown()

        let spans = recorder.queuedSpans
        try #require(spans.count == 1)
        let span = spans[0]
        // Within the client's view of the call (1 ms for the two clocks' readings), and at
        // least as long as the handler's sleep.
        #expect(span.start + 1_000_000 >= before && span.end <= after + 1_000_000, "span \(span.start) to \(span.end), call \(before) to \(after)")
        #expect(span.end - span.start >= 30_000_000, "span of \(span.end - span.start) ns around a 30 ms handler")
    }
}
