import DroneDeliveryAPI
import ProtobufKit
import RPC

/// W3C trace context and a correlation id for the current request, carried across every hop:
/// incoming calls set it (TracingServerInterceptor), outgoing calls send it
/// (TracingClientInterceptor), and queue messages carry it in their headers and envelopes.
public enum RequestTrace {
    @TaskLocal public static var current: CommonV1.TraceContext?

    /// A new trace: `00-<32 hex trace id>-<16 hex span id>-01`, correlation id = trace id.
    public static func makeNew() -> CommonV1.TraceContext {
        var trace = CommonV1.TraceContext()
        let traceID = randomHex(bytes: 16)
        trace.traceparent = "00-\(traceID)-\(randomHex(bytes: 8))-01"
        trace.correlationId = traceID
        return trace
    }

    /// The same trace with a new span id for the next hop.
    public static func child(of parent: CommonV1.TraceContext) -> CommonV1.TraceContext {
        var trace = parent
        let parts = parent.traceparent.split(separator: "-")
        if parts.count == 4, parts[1].count == 32 {
            trace.traceparent = "00-\(parts[1])-\(randomHex(bytes: 8))-\(parts[3])"
        } else {
            let fresh = makeNew()
            trace.traceparent = fresh.traceparent
            if trace.correlationId.isEmpty { trace.correlationId = fresh.correlationId }
        }
        return trace
    }

    /// The trace of an incoming call's metadata, or a new one.
    public static func from(_ metadata: Metadata) -> CommonV1.TraceContext {
        var trace = CommonV1.TraceContext()
        if let parent = metadata["traceparent"], isValidTraceparent(parent) {
            trace.traceparent = parent
            trace.tracestate = metadata["tracestate"] ?? ""
            trace.correlationId = metadata["x-correlation-id"] ?? String(parent.split(separator: "-")[1])
            return trace
        }
        trace = makeNew()
        if let correlation = metadata["x-correlation-id"] ?? metadata["x-request-id"], !correlation.isEmpty { trace.correlationId = correlation }
        return trace
    }

    /// The trace as message headers (queue messages).
    public static func headers(_ trace: CommonV1.TraceContext) -> [String: String] {
        var headers = ["traceparent": trace.traceparent, "correlation-id": trace.correlationId]
        if !trace.tracestate.isEmpty { headers["tracestate"] = trace.tracestate }
        return headers
    }

    static func isValidTraceparent(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0].count == 2 && parts[1].count == 32 && parts[2].count == 16 && parts[3].count == 2
            && parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }
}

/// Makes the caller's trace the current one while its handler runs.
public struct TracingServerInterceptor: ServerInterceptor {
    public init() {}
    public func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        let trace = RequestTrace.from(context.metadata)
        try await RequestTrace.$current.withValue(trace) { try await next(context) }
    }
}

/// Sends the current trace (a child span of it) with every outgoing call.
public struct TracingClientInterceptor: ClientInterceptor {
    public init() {}
    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        guard let trace = RequestTrace.current else { return try await next(options) }
        var options = options
        let child = RequestTrace.child(of: trace)
        options.metadata.add("traceparent", child.traceparent)
        if !child.tracestate.isEmpty { options.metadata.add("tracestate", child.tracestate) }
        if !child.correlationId.isEmpty { options.metadata.add("x-correlation-id", child.correlationId) }
        try await next(options)
    }
}

/// `bytes` random bytes as lower-case hex, from the system's secure generator (eight bytes per
/// draw: each draw is a getrandom call).
public func randomHex(bytes: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(bytes * 2)
    var word: UInt64 = 0
    for index in 0..<bytes {
        if index % 8 == 0 { word = generator.next() }
        let byte = UInt8(truncatingIfNeeded: word)
        word >>= 8
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// A new identifier: `prefix` and 16 random hex digits (64 bits).
public func makeID(_ prefix: String) -> String { "\(prefix)-\(randomHex(bytes: 8))" }
