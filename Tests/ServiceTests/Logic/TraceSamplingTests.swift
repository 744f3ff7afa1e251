import DroneDeliveryAPI
import GRPCProtos
import RPC
import RPCServices
import ServiceKit
import Synchronization
import Testing

/// Trace sampling: a new trace is sampled by its id and the ratio (`TraceSampler`), and a trace
/// that arrives keeps its decision on every hop: unsampled, no process records a span, yet the
/// context still travels.
@Suite("Trace sampling: parent-based ratio sampler, the traceparent's sampled flag honoured and propagated")
struct TraceSamplingTests {
    @Test("the ratio sampler decides on the last 56 bits of the trace id", arguments: [
        (1.0, "ffffffffffffffffffffffffffffffff", true),
        (0.0, "00000000000000000000000000000000", false),
        (0.25, "ffffffffffffffffff00000000000000", true),
        (0.25, "ffffffffffffffffff3fffffffffffff", true),
        (0.25, "00000000000000000040000000000000", false),
        (0.25, "00000000000000000fffffffffffffff", false),
        (0.5, "0000000000000000007fffffffffffff", true),
        (0.5, "00000000000000000080000000000000", false),
    ])
    func ratioThreshold(ratio: Double, traceID: String, sampled: Bool) {
        #expect(TraceSampler(ratio: ratio).samples(traceID: traceID) == sampled)
    }

    @Test("a new trace carries the sampler's decision in its flags: 01 at ratio 1, 00 at ratio 0")
    func newTraceFlags() {
        for _ in 0..<20 {
            #expect(RequestTrace.makeNew(sampler: TraceSampler(ratio: 1)).traceparent.hasSuffix("-01"))
            let unsampled = RequestTrace.makeNew(sampler: TraceSampler(ratio: 0)).traceparent
            #expect(unsampled.hasSuffix("-00") && RequestTrace.isValidTraceparent(unsampled) && !RequestTrace.isSampled(unsampled))
            let fresh = RequestTrace.makeNew(sampler: TraceSampler(ratio: 1))
            #expect(fresh.correlationId.utf8.count == 32 && fresh.correlationId == RequestTrace.traceID(fresh.traceparent), "\(fresh)")
        }
        // At one in two, the decision follows the trace id's low 56 bits (a new trace is not always sampled).
        let half = (0..<200).map { _ in RequestTrace.makeNew(sampler: TraceSampler(ratio: 0.5)).traceparent }
        #expect(half.allSatisfy { TraceSampler(ratio: 0.5).samples(traceID: RequestTrace.traceID($0)) == RequestTrace.isSampled($0) })
        #expect(RequestTrace.isSampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(RequestTrace.isSampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b"))
        #expect(!RequestTrace.isSampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0a"))
    }

    @Test("a span under a parent that is not a valid traceparent is the root of the new trace it starts; under a valid one, its child")
    func spanParents() async throws {
        let recorder = SpanRecorder(host: "127.0.0.1", port: 1, serviceName: "parent-test")  // never started: spans stay queued
        var parent = CommonV1.TraceContext()
        parent.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z"  // 55 characters, not hex at the end
        try await Tracing.withSpan("under an invalid parent", kind: .consumer, parent: parent, recorder: recorder) {}
        parent.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        try await Tracing.withSpan("under a valid parent", kind: .consumer, parent: parent, recorder: recorder) {}
        let spans = recorder.queuedSpans
        try #require(spans.count == 2)
        #expect(spans[0].parentSpanID.isEmpty && spans[0].traceID != "4bf92f3577b34da6a3ce929d0e0e4736", "\(spans[0])")
        #expect(spans[1].parentSpanID == "00f067aa0ba902b7" && spans[1].traceID == "4bf92f3577b34da6a3ce929d0e0e4736", "\(spans[1])")
    }

    @Test("the recorder's queue is bounded: spans beyond maxQueued are dropped, those before are kept whole across batches")
    func boundedQueue() throws {
        let recorder = SpanRecorder(host: "127.0.0.1", port: 1, serviceName: "queue-test", maxQueued: 5, maxBatch: 2)  // never started
        let traceID = randomHex(bytes: 16)
        let method = Grpc.Health.V1.Health.Method.Check.descriptor
        for index in 0..<7 {
            let traceparent = "00-\(traceID)-\(String(repeating: "0", count: 15))\(index)-01"
            if index.isMultiple(of: 2) {
                recorder.recordRPC(path: method.path, code: .ok, traceparent: traceparent, parentTraceparent: "", traceState: "", kind: .server,
                                   start: UInt64(index), end: UInt64(index + 1), error: nil)
            } else {
                recorder.record(FinishedSpan(traceparent: traceparent, parentTraceparent: "", name: "step \(index)", kind: .internal,
                                             start: UInt64(index), end: UInt64(index + 1), attributes: [SpanAttribute("index", index)]))
            }
        }
        #expect(recorder.queuedCount == 5)
        let spans = recorder.queuedSpans
        try #require(spans.count == 5, "\(spans)")
        #expect(spans.map(\.spanID) == (0..<5).map { "\(String(repeating: "0", count: 15))\($0)" })
        #expect(spans.map(\.name) == ["grpc.health.v1.Health/Check", "step 1", "grpc.health.v1.Health/Check", "step 3", "grpc.health.v1.Health/Check"])
        #expect(spans.allSatisfy { $0.traceID == traceID && $0.end == $0.start + 1 })
        #expect(spans[0].kind == .server && spans[0].attributes.contains { $0.key == "rpc.grpc.status_code" && $0.value == .int(0) })
        #expect(spans[3].kind == .internal && spans[3].attributes.map(\.key) == ["index"] && spans[3].attributes[0].value == .int(3))
    }

    @Test("a child keeps the trace id, the flags and the correlation id, with a new span id; a parent that is not a traceparent starts a new trace")
    func child() {
        var parent = CommonV1.TraceContext()
        parent.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        parent.correlationId = "order-7"
        var spans = Set<String>()
        for _ in 0..<50 {
            let child = RequestTrace.child(of: parent).traceparent
            #expect(RequestTrace.isValidTraceparent(child), "\(child)")
            #expect(child.hasPrefix("00-4bf92f3577b34da6a3ce929d0e0e4736-") && child.hasSuffix("-00"), "\(child)")
            spans.insert(RequestTrace.spanID(child))
        }
        #expect(spans.count == 50 && !spans.contains("00f067aa0ba902b7"), "\(spans)")
        #expect(RequestTrace.child(of: parent).correlationId == "order-7")
        parent.traceparent = "not-a-traceparent"
        let fresh = RequestTrace.child(of: parent)
        #expect(RequestTrace.isValidTraceparent(fresh.traceparent) && fresh.correlationId == "order-7")
    }

    @Test("the ratio comes from FABRIKAM_TRACE_SAMPLE_RATIO, else OpenTelemetry's variables; default 1; a bad value names the variable")
    func configuration() throws {
        #expect(try TraceSampler(environment: [:]).ratio == 1)
        #expect(try TraceSampler(environment: ["FABRIKAM_TRACE_SAMPLE_RATIO": "0.1"]).ratio == 0.1)
        #expect(try TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.2"]).ratio == 0.2)
        #expect(try TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "parentbased_always_off"]).ratio == 0)
        #expect(try TraceSampler(environment: ["FABRIKAM_TRACE_SAMPLE_RATIO": "0.5", "OTEL_TRACES_SAMPLER": "parentbased_always_off"]).ratio == 0.5)
        #expect(throws: ConfigurationError.self) { try TraceSampler(environment: ["FABRIKAM_TRACE_SAMPLE_RATIO": "2"]) }
        #expect(throws: ConfigurationError.self) { try TraceSampler(environment: ["OTEL_TRACES_SAMPLER": "jaeger_remote"]) }
    }

    @Test("export batching from OpenTelemetry's OTEL_BSP_* variables; defaults 1000 ms, 8192, 512; a bad value names the variable")
    func batchSettings() throws {
        #expect(try Tracing.BatchSettings(environment: [:]) == Tracing.BatchSettings())
        let set = try Tracing.BatchSettings(environment: ["OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
                                                          "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048"])
        #expect(set.flushInterval == .milliseconds(250) && set.maxQueued == 4096 && set.maxBatch == 2048)
        // The older name wins over the standard one; a queue smaller than the default batch makes the batch the queue.
        #expect(try Tracing.BatchSettings(environment: ["FABRIKAM_OTLP_FLUSH_MS": "100", "OTEL_BSP_SCHEDULE_DELAY": "250"]).flushInterval == .milliseconds(100))
        #expect(try Tracing.BatchSettings(environment: ["OTEL_BSP_MAX_QUEUE_SIZE": "100"]).maxBatch == 100)
        for (variable, value, message) in [("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be a whole number from 1 to 65536, got \"0\""),
                                           ("OTEL_BSP_SCHEDULE_DELAY", "soon", "OTEL_BSP_SCHEDULE_DELAY must be a whole number from 10 to 3600000, got \"soon\""),
                                           ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "OTEL_BSP_MAX_QUEUE_SIZE must be a whole number from 1 to 1048576, got \"-1\"")] {
            let error = #expect(throws: ConfigurationError.self) { try Tracing.BatchSettings(environment: [variable: value]) }
            #expect(error?.description == message)
        }
        let tooLarge = #expect(throws: ConfigurationError.self) {
            try Tracing.BatchSettings(environment: ["OTEL_BSP_MAX_QUEUE_SIZE": "1000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2000"])
        }
        #expect(tooLarge?.description == "OTEL_BSP_MAX_EXPORT_BATCH_SIZE (2000) must not be larger than OTEL_BSP_MAX_QUEUE_SIZE (1000)")
    }

    /// A front server whose handler calls a back server, both with the tracing interceptors
    /// recording into one recorder (never started: its spans stay queued, to be counted). Returns
    /// the spans recorded and the traceparent the back server's handler saw, for a call sent
    /// with `traceparent`.
    func callThroughTwoServers(traceparent: String) async throws -> (spans: Int, backSaw: String?) {
        let recorder = SpanRecorder(host: "127.0.0.1", port: 1, serviceName: "sampling-test")
        let seen = Mutex<String?>(nil)
        var backRouter = Router()
        backRouter.unary(Grpc.Health.V1.Health.Method.Check.self) { _, _ in
            seen.withLock { $0 = RequestTrace.current?.traceparent }
            return Grpc.Health.V1.HealthCheckResponse()
        }
        let back = RPCServer(router: backRouter, options: .defaults { $0.interceptors = [TracingServerInterceptor(recorder: recorder)] })
        let backClient = RPCClient(host: "127.0.0.1", port: try await back.start(),
                                   options: .defaults { $0.interceptors = [TracingClientInterceptor(recorder: recorder)] })
        var frontRouter = Router()
        frontRouter.unary(Grpc.Health.V1.Health.Method.Check.self) { request, _ in
            try await Grpc.Health.V1.Health.Client(backClient).check(request)
        }
        let front = RPCServer(router: frontRouter, options: .defaults { $0.interceptors = [TracingServerInterceptor(recorder: recorder)] })
        let client = RPCClient(host: "127.0.0.1", port: try await front.start())
        var options = CallOptions(timeout: .seconds(10))
        options.metadata.add("traceparent", traceparent)
        var failure: (any Error)?
        do {
            _ = try await Grpc.Health.V1.Health.Client(client).check(Grpc.Health.V1.HealthCheckRequest(), options: options)
        } catch {
            failure = error
        }
        await client.close()
        await front.shutdown()
        await backClient.close()
        await back.shutdown()
        if let failure { throw failure }
        return (recorder.queuedCount, seen.withLock { $0 })
    }

    @Test("an unsampled traceparent (flags 00) records no span on either server or the call between them, and still reaches the second server")
    func unsampledPropagatesWithoutSpans() async throws {
        let traceID = randomHex(bytes: 16), clientSpan = randomHex(bytes: 8)
        let (spans, backSaw) = try await callThroughTwoServers(traceparent: "00-\(traceID)-\(clientSpan)-00")
        #expect(spans == 0, "spans recorded for an unsampled trace")
        let seen = try #require(backSaw, "the second server's handler saw no trace context")
        #expect(RequestTrace.traceID(seen) == traceID, "the trace id travels: \(seen)")
        #expect(RequestTrace.spanID(seen) != clientSpan, "each hop has its own span id: \(seen)")
        #expect(seen.hasSuffix("-00"), "the decision travels: \(seen)")
    }

    @Test("a sampled traceparent (flags 01) records the three spans (two SERVER, one CLIENT) and arrives sampled")
    func sampledRecords() async throws {
        let traceID = randomHex(bytes: 16)
        let (spans, backSaw) = try await callThroughTwoServers(traceparent: "00-\(traceID)-\(randomHex(bytes: 8))-01")
        #expect(spans == 3)
        #expect(backSaw.map(RequestTrace.traceID) == traceID)
        #expect(backSaw?.hasSuffix("-01") == true, "\(backSaw ?? "none")")
    }
}
