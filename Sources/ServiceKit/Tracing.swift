import DroneDeliveryAPI
import ProtobufKit
import RPC
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// W3C trace context and a correlation id for the current request, carried across every hop:
/// incoming calls set it (TracingServerInterceptor), outgoing calls send it
/// (TracingClientInterceptor), and queue messages carry it in their headers and envelopes.
public enum RequestTrace {
    @TaskLocal public static var current: CommonV1.TraceContext?

    /// A new trace: `00-<32 hex trace id>-<16 hex span id>-<flags>`, correlation id = trace id.
    /// The flags say whether it is sampled (`01`) or not (`00`), as `sampler` decides for the
    /// trace id; every hop after this one follows that decision (`child(of:)` keeps the flags).
    public static func makeNew(sampler: TraceSampler = Tracing.sampler) -> CommonV1.TraceContext {
        var trace = CommonV1.TraceContext()
        // Built in place (it runs for every call that arrives without a trace).
        trace.traceparent = String(unsafeUninitializedCapacity: 55) { text in
            text[0] = UInt8(ascii: "0")
            text[1] = UInt8(ascii: "0")
            text[2] = UInt8(ascii: "-")
            writeRandomHex(into: UnsafeMutableBufferPointer(rebasing: text[3..<35]))
            text[35] = UInt8(ascii: "-")
            writeRandomHex(into: UnsafeMutableBufferPointer(rebasing: text[36..<52]))
            text[52] = UInt8(ascii: "-")
            text[53] = UInt8(ascii: "0")
            text[54] = UInt8(ascii: sampler.samples(traceIDDigits: UnsafeBufferPointer(rebasing: text[3..<35])) ? "1" : "0")
            return 55
        }
        trace.correlationId = traceID(trace.traceparent)
        return trace
    }

    /// Whether a `traceparent`'s flags have the sampled bit (W3C trace context: bit 0 of the
    /// last two hex digits). A trace that is not sampled records no spans anywhere, but its
    /// context still travels, so logs keep their trace ids. Text that is not a traceparent
    /// counts as sampled (as before sampling existed).
    public static func isSampled(_ traceparent: String) -> Bool {
        guard traceparent.utf8.count == 55 else { return true }
        // The flags' low hex digit, decoded (its ASCII code's parity is not its value's: 'a' is
        // 0x61), read from the bytes: `utf8.last` walks the generic collection's indices.
        var text = traceparent
        return text.withUTF8 { (hexValue($0[54]) ?? 1) & 1 == 1 }
    }

    /// The same trace with a new span id for the next hop.
    public static func child(of parent: CommonV1.TraceContext) -> CommonV1.TraceContext {
        var trace = parent
        if isValidTraceparent(parent.traceparent) {
            // `00-<trace id>-` and `-<flags>` kept, the span id between them new; built in place
            // (it runs for every traced hop).
            var old = parent.traceparent
            trace.traceparent = old.withUTF8 { old in
                String(unsafeUninitializedCapacity: 55) { text in
                    _ = text.initialize(from: old)
                    text[0] = UInt8(ascii: "0")
                    text[1] = UInt8(ascii: "0")
                    writeRandomHex(into: UnsafeMutableBufferPointer(rebasing: text[36..<52]))
                    return 55
                }
            }
        } else {
            let fresh = makeNew()
            trace.traceparent = fresh.traceparent
            if trace.correlationId.isEmpty { trace.correlationId = fresh.correlationId }
        }
        return trace
    }

    /// The trace of an incoming call's metadata, or a new one.
    public static func from(_ metadata: Metadata) -> CommonV1.TraceContext { incoming(metadata).trace }

    /// The trace of an incoming call's metadata, and whether it came with one (a valid
    /// `traceparent`: the caller's span); without one, a new trace.
    public static func incoming(_ metadata: Metadata) -> (trace: CommonV1.TraceContext, hasParent: Bool) {
        var trace = CommonV1.TraceContext()
        if let parent = metadata["traceparent"], isValidTraceparent(parent) {
            trace.traceparent = parent
            trace.tracestate = metadata["tracestate"] ?? ""
            trace.correlationId = metadata["x-correlation-id"] ?? traceID(parent)
            return (trace, true)
        }
        trace = makeNew()
        if let correlation = metadata["x-correlation-id"] ?? metadata["x-request-id"], !correlation.isEmpty { trace.correlationId = correlation }
        return (trace, false)
    }

    /// The `traceparent` a span under `parent` names as its parent: empty when there is none, or
    /// when it is not a valid one (`child(of:)` then started a new trace, whose root the span is).
    static func parentTraceparent(_ parent: CommonV1.TraceContext?) -> String {
        guard let parent, isValidTraceparent(parent.traceparent) else { return "" }
        return parent.traceparent
    }

    /// The trace as message headers (queue messages).
    public static func headers(_ trace: CommonV1.TraceContext) -> [String: String] {
        var headers = ["traceparent": trace.traceparent, "correlation-id": trace.correlationId]
        if !trace.tracestate.isEmpty { headers["tracestate"] = trace.tracestate }
        return headers
    }

    /// `vv-<32 hex>-<16 hex>-ff`, checked on the bytes (it runs on every call; Character
    /// properties such as `isHexDigit` are Unicode lookups, and were a measurable cost).
    public static func isValidTraceparent(_ text: String) -> Bool {
        guard text.utf8.count == 55 else { return false }
        var text = text
        return text.withUTF8 { bytes in
            for index in 0..<55 {
                let byte = bytes[index]
                switch index {
                case 2, 35, 52:
                    if byte != UInt8(ascii: "-") { return false }
                default:
                    let isHex = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46)
                    if !isHex { return false }
                }
            }
            return true
        }
    }
}

/// Makes the caller's trace the current one while its handler runs. With tracing on
/// (`Tracing.recorder`), the call is a SERVER span: a new span id, the caller's span as its
/// parent, and the current trace names this span, so the calls the handler makes are its children.
public struct TracingServerInterceptor: ServerInterceptor {
    let recorder: SpanRecorder?
    public init(recorder: SpanRecorder? = Tracing.recorder) { self.recorder = recorder }

    public func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        // A valid incoming traceparent is the caller's span; without one, `incoming` made a new
        // trace whose span id is this span's, with no parent.
        let (incoming, hasParent) = RequestTrace.incoming(context.metadata)
        guard let recorder else {
            return try await RequestTrace.$current.withValue(incoming) { try await next(context) }
        }
        let trace = hasParent ? RequestTrace.child(of: incoming) : incoming
        // Not sampled (the caller's flags, or the sampler's decision for a new trace): no span,
        // but the context goes on to the calls the handler makes.
        guard RequestTrace.isSampled(trace.traceparent) else {
            return try await RequestTrace.$current.withValue(trace) { try await next(context) }
        }
        let start = Tracing.wallClock(monotonic: context.startNanoseconds)
        do {
            try await RequestTrace.$current.withValue(trace) { try await next(context) }
        } catch {
            let code = Tracing.code(of: error)
            // Described only when the span reports it (a server span's NOT_FOUND is no error,
            // and a message made for every such call was a measurable part of its span's cost).
            recorder.recordRPC(path: context.method.path, code: code, traceparent: trace.traceparent, parentTraceparent: hasParent ? incoming.traceparent : "",
                               traceState: trace.tracestate, kind: .server, start: start, end: Tracing.now(),
                               error: Tracing.isServerError(code) ? Tracing.describe(error) : nil)
            throw error
        }
        recorder.recordRPC(path: context.method.path, code: .ok, traceparent: trace.traceparent, parentTraceparent: hasParent ? incoming.traceparent : "",
                           traceState: trace.tracestate, kind: .server, start: start, end: Tracing.now(), error: nil)
    }
}

/// Sends the current trace (a child span of it) with every outgoing call. With tracing on, the
/// call is a CLIENT span (its id is the one sent), a child of the current span, or the root of a
/// new trace when the call is made outside any.
public struct TracingClientInterceptor: ClientInterceptor {
    let recorder: SpanRecorder?
    public init(recorder: SpanRecorder? = Tracing.recorder) { self.recorder = recorder }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        let parent = RequestTrace.current
        guard recorder != nil || parent != nil else { return try await next(options) }
        var options = options
        let child = parent.map(RequestTrace.child(of:)) ?? RequestTrace.makeNew()
        options.metadata.add("traceparent", child.traceparent)
        if !child.tracestate.isEmpty { options.metadata.add("tracestate", child.tracestate) }
        if !child.correlationId.isEmpty { options.metadata.add("x-correlation-id", child.correlationId) }
        // An unsampled trace is sent on (flags 00, so the server records nothing either) unrecorded.
        guard let recorder, RequestTrace.isSampled(child.traceparent) else { return try await next(options) }
        let start = Tracing.now()
        do {
            try await next(options)
        } catch {
            recorder.recordRPC(path: method.path, code: Tracing.code(of: error), traceparent: child.traceparent, parentTraceparent: RequestTrace.parentTraceparent(parent),
                               traceState: child.tracestate, kind: .client, start: start, end: Tracing.now(), error: Tracing.describe(error))
            throw error
        }
        recorder.recordRPC(path: method.path, code: .ok, traceparent: child.traceparent, parentTraceparent: RequestTrace.parentTraceparent(parent),
                           traceState: child.tracestate, kind: .client, start: start, end: Tracing.now(), error: nil)
    }
}

/// `bytes` random bytes as lower-case hex, from the kernel's secure generator.
public func randomHex(bytes: Int) -> String {
    String(unsafeUninitializedCapacity: bytes * 2) { text in
        writeRandomHex(into: UnsafeMutableBufferPointer(rebasing: text[0..<(bytes * 2)]))
        return bytes * 2
    }
}

/// Fills `text` with lower-case hex digits of random bytes (half as many bytes as digits).
private func writeRandomHex(into text: UnsafeMutableBufferPointer<UInt8>) {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: text.count / 2) { random in
        SecureRandomPool.shared.fill(UnsafeMutableRawBufferPointer(random))
        for (index, byte) in random.enumerated() {
            text[2 * index] = hexDigit(byte >> 4)
            text[2 * index + 1] = hexDigit(byte & 0xf)
        }
    }
}

private func hexDigit(_ value: UInt8) -> UInt8 { value < 10 ? 48 + value : 87 + value }

/// The value of one hex digit's ASCII code (either case); nil when it is not one.
func hexValue(_ digit: UInt8) -> UInt8? {
    switch digit {
    case 0x30...0x39: digit - 0x30
    case 0x61...0x66: digit - 0x61 + 10
    case 0x41...0x46: digit - 0x41 + 10
    default: nil
    }
}

/// Random bytes from getrandom(2), fetched 4 KiB at a time: every request needs a few ids
/// (request id, trace and span ids), and one system call each was a measurable part of the
/// gateway's cost. The bytes are the kernel's; each is handed out once.
final class SecureRandomPool: Sendable {
    static let shared = SecureRandomPool()
    private static let size = 4096

    private struct State {
        var bytes = [UInt8](repeating: 0, count: SecureRandomPool.size)
        var used = SecureRandomPool.size
    }

    private let state = Mutex(State())

    func fill(_ destination: UnsafeMutableRawBufferPointer) {
        var filled = 0
        state.withLock { state in
            while filled < destination.count {
                if state.used == state.bytes.count {
                    state.bytes.withUnsafeMutableBytes { Self.systemRandom($0) }
                    state.used = 0
                }
                let count = min(destination.count - filled, state.bytes.count - state.used)
                state.bytes.withUnsafeBytes { pool in
                    (destination.baseAddress! + filled).copyMemory(from: pool.baseAddress! + state.used, byteCount: count)
                    // Handed out once: the copy in the pool is wiped.
                    UnsafeMutableRawPointer(mutating: pool.baseAddress! + state.used).initializeMemory(as: UInt8.self, repeating: 0, count: count)
                }
                state.used += count
                filled += count
            }
        }
    }

    /// The kernel's generator: /dev/urandom, opened once (getrandom(2) is not in Swift's Glibc
    /// module); should it be unreadable, the standard library's generator (also the kernel's,
    /// eight bytes per call).
    private static let urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC)

    private static func systemRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        var offset = 0
        while urandom >= 0, offset < buffer.count {
            let count = read(urandom, buffer.baseAddress! + offset, buffer.count - offset)
            if count <= 0 { break }
            offset += count
        }
        var generator = SystemRandomNumberGenerator()
        while offset < buffer.count {
            var word = generator.next()
            let count = min(8, buffer.count - offset)
            withUnsafeBytes(of: &word) { (buffer.baseAddress! + offset).copyMemory(from: $0.baseAddress!, byteCount: count) }
            offset += count
        }
    }
}

/// A new identifier: `prefix` and 16 random hex digits (64 bits).
public func makeID(_ prefix: String) -> String { "\(prefix)-\(randomHex(bytes: 8))" }
