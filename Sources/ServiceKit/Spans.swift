import CoreMetrics
import DroneDeliveryAPI
import Foundation
import Logging
import NIOCore
import NIOPosix
import ProtobufKit
import RPC
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a span describes (OTLP's `Span.SpanKind`, same numbers).
public enum SpanKind: UInt64, Sendable {
    case `internal` = 1, server = 2, client = 3, producer = 4, consumer = 5
}

/// One attribute of a span: a key and a string, integer or boolean value.
public struct SpanAttribute: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int64)
        case bool(Bool)
    }

    public var key: String
    public var value: Value
    public init(_ key: String, _ value: String) { self.key = key; self.value = .string(value) }
    public init(_ key: String, _ value: Int) { self.key = key; self.value = .int(Int64(value)) }
    public init(_ key: String, _ value: Bool) { self.key = key; self.value = .bool(value) }
}

/// A span that has ended, as the recorder queues it for export.
///
/// Its ids are kept as the `traceparent`s the trace context already holds (this span's, and its
/// parent's), and an RPC span keeps its method's `:path` and status code: the hex ids, the name
/// and the `rpc.*` attributes are written from them at export, so recording a span allocates
/// no string of its own (each id, name and attribute array used to be one, on every call).
public struct FinishedSpan: Sendable {
    /// This span's W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
    public var traceparent: String
    /// The parent span's `traceparent`; empty for a root span.
    public var parentTraceparent: String
    public var traceState: String
    public var kind: SpanKind
    /// Nanoseconds since 1970 (UTC).
    public var start: UInt64
    public var end: UInt64
    /// Attributes beyond an RPC span's own `rpc.*` ones.
    public var attributes: [SpanAttribute]
    /// Set when the operation failed (OTLP status ERROR with this message); nil: unset.
    public var error: String?
    /// The name of a span that is not an RPC's.
    fileprivate var plainName: String
    /// An RPC span's method (`/package.Service/Method`) and status code.
    private(set) var rpc: (path: String, code: RPCError.Code)?

    /// A span named `name`, with its own `traceparent` and its parent's (empty: a root span).
    public init(traceparent: String, parentTraceparent: String, traceState: String = "", name: String, kind: SpanKind,
                start: UInt64, end: UInt64, attributes: [SpanAttribute] = [], error: String? = nil) {
        self.traceparent = traceparent
        self.parentTraceparent = parentTraceparent
        self.traceState = traceState
        self.plainName = name
        self.kind = kind
        self.start = start
        self.end = end
        self.attributes = attributes
        self.error = error
    }

    /// The span of an RPC (server or client side): named `package.Service/Method`, with
    /// OpenTelemetry's RPC attributes (`rpc.system`, `rpc.service`, `rpc.method`,
    /// `rpc.grpc.status_code`).
    public init(rpc method: MethodDescriptor, code: RPCError.Code, traceparent: String, parentTraceparent: String, traceState: String,
                kind: SpanKind, start: UInt64, end: UInt64, error: String? = nil) {
        self.init(traceparent: traceparent, parentTraceparent: parentTraceparent, traceState: traceState, name: "", kind: kind,
                  start: start, end: end, error: error)
        rpc = (method.path, code)
    }

    /// The 32 hex digits of the trace id.
    public var traceID: String { RequestTrace.traceID(traceparent) }
    /// The 16 hex digits of this span's id.
    public var spanID: String { RequestTrace.spanID(traceparent) }
    /// The 16 hex digits of the parent span's id; empty for a root span.
    public var parentSpanID: String { RequestTrace.spanID(parentTraceparent) }
    /// The span's name (an RPC span's is its method, `package.Service/Method`).
    public var name: String { rpc.map { String($0.path.dropFirst()) } ?? plainName }
    /// `/package.Service/Method` split at its last slash.
    static func serviceAndMethod(_ path: String) -> (service: Substring.UTF8View, method: Substring.UTF8View) {
        let utf8 = path.utf8
        guard let slash = utf8.lastIndex(of: UInt8(ascii: "/")), slash > utf8.startIndex else { return (Substring(path).utf8, Substring().utf8) }
        return (path[utf8.index(after: utf8.startIndex)..<slash].utf8, path[utf8.index(after: slash)...].utf8)
    }
}

/// Spans: whether this process records them, and how code opens one.
///
/// Off unless `FABRIKAM_OTLP_ENDPOINT` (or `--otlp-endpoint`) names a collector: then
/// `runService` makes the process's `SpanRecorder` before any server or client exists, and the
/// tracing interceptors, the gateway, the queue's producer and consumer and the saga steps
/// record spans into it. Off, every one of them does what it did before spans existed (the
/// trace context still crosses every hop), and nothing is allocated for spans.
public enum Tracing {
    /// Written once, by `configure` in `runService`, before any server, client or interceptor
    /// exists; only read afterwards.
    nonisolated(unsafe) static var configured: SpanRecorder?

    /// The process's recorder; nil when tracing is off.
    public static var recorder: SpanRecorder? { configured }

    /// Decides whether the traces this process starts are sampled. Written once, by `configure`
    /// in `runService`, before any trace is made; only read afterwards.
    nonisolated(unsafe) public private(set) static var sampler = TraceSampler(ratio: 1)

    /// The variable that names the collector (`host:port`, or `http://host:port`).
    public static let endpointVariable = "FABRIKAM_OTLP_ENDPOINT"
    /// The command-line flag that does the same (every process accepts it).
    public static let endpointFlag = "otlp-endpoint"

    /// Makes the process's recorder when a collector is configured, and starts its exporter.
    /// Throws a `ConfigurationError` for an address it cannot use.
    @discardableResult
    public static func configure(serviceName: String, arguments: [String] = CommandLine.arguments,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SpanRecorder? {
        // Before the endpoint: a process that records nothing still decides for the traces it
        // starts, and the services it calls record by that decision.
        sampler = try TraceSampler(environment: environment)
        var endpoint = environment[endpointVariable]
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            if argument == "--\(endpointFlag)" { endpoint = iterator.next() }
            else if argument.hasPrefix("--\(endpointFlag)=") { endpoint = String(argument.dropFirst(endpointFlag.count + 3)) }
        }
        guard let endpoint, !endpoint.isEmpty, endpoint != "off" else { return nil }
        let (host, port) = try parseEndpoint(endpoint)
        let batching = try BatchSettings(environment: environment)
        let recorder = SpanRecorder(host: host, port: port, serviceName: environment["OTEL_SERVICE_NAME"] ?? serviceName,
                                    flushInterval: batching.flushInterval, maxQueued: batching.maxQueued, maxBatch: batching.maxBatch)
        recorder.start()
        configured = recorder
        return recorder
    }

    /// How the recorder batches its exports, from OpenTelemetry's batch span processor variables
    /// (the names every OpenTelemetry SDK reads), with this project's defaults where one is unset:
    ///
    /// - `OTEL_BSP_SCHEDULE_DELAY`: milliseconds between exports (1000; the specification's 5000
    ///   leaves a trace incomplete at the collector for longer than people looking at it wait);
    ///   `FABRIKAM_OTLP_FLUSH_MS` is the older name, and the one that wins when both are set;
    /// - `OTEL_BSP_MAX_QUEUE_SIZE`: spans kept while waiting for an export (8192); one more is
    ///   dropped and counted in `fabrikam_otlp_spans_dropped_total{reason="queue_full"}`;
    /// - `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans in one export request (512), at most the queue's
    ///   size. A full batch is exported without waiting for the delay.
    public struct BatchSettings: Equatable, Sendable {
        public var flushInterval = Duration.milliseconds(1000)
        public var maxQueued = 8192
        public var maxBatch = 512

        public init() {}

        /// A value that is not a whole number in range throws a `ConfigurationError` naming it.
        public init(environment: [String: String]) throws {
            func number(_ variable: String, _ range: ClosedRange<Int>) throws -> Int? {
                guard let text = environment[variable] else { return nil }
                guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                    throw ConfigurationError("\(variable) must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
                }
                return value
            }
            if let delay = try number("FABRIKAM_OTLP_FLUSH_MS", 10...3_600_000) ?? number("OTEL_BSP_SCHEDULE_DELAY", 10...3_600_000) {
                flushInterval = .milliseconds(delay)
            }
            maxQueued = try number("OTEL_BSP_MAX_QUEUE_SIZE", 1...1_048_576) ?? maxQueued
            maxBatch = try number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1...65_536) ?? min(maxBatch, maxQueued)
            guard maxBatch <= maxQueued else {
                throw ConfigurationError("OTEL_BSP_MAX_EXPORT_BATCH_SIZE (\(maxBatch)) must not be larger than OTEL_BSP_MAX_QUEUE_SIZE (\(maxQueued))")
            }
        }
    }

    /// `host:port` or `http://host:port[/]` (OTLP/gRPC in cleartext).
    static func parseEndpoint(_ text: String) throws -> (host: String, port: Int) {
        var address = Substring(text)
        if address.hasPrefix("http://") { address = address.dropFirst(7) }
        else if address.contains("://") {
            throw ConfigurationError("\(endpointVariable)=\(text): only OTLP/gRPC in cleartext (host:port or http://host:port) is supported")
        }
        while address.hasSuffix("/") { address = address.dropLast() }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port),
              colon > address.startIndex else {
            throw ConfigurationError("\(endpointVariable) must be host:port, got \"\(text)\"")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// Runs `body` in a new span, a child of the current trace (or the root of a new one), which
    /// is the current trace while `body` runs. Off, just runs `body`.
    public static func withSpan<T>(_ name: String, kind: SpanKind = .internal, attributes: @autoclosure () -> [SpanAttribute] = [],
                                   _ body: () async throws -> T) async throws -> T {
        guard let recorder = configured else { return try await body() }
        return try await recorder.inSpan(name, kind: kind, parent: RequestTrace.current, attributes: attributes(), body)
    }

    /// Runs `body` in a new span whose parent is `parent` (a trace context that came with a
    /// message; nil: a new trace), recorded into `recorder` (the process's by default; a test
    /// gives its own). Off, `parent` (or a new trace) is the current trace while `body` runs, as
    /// before spans existed.
    public static func withSpan<T>(_ name: String, kind: SpanKind, parent: CommonV1.TraceContext?, recorder: SpanRecorder? = Tracing.recorder,
                                   attributes: @autoclosure () -> [SpanAttribute] = [], _ body: () async throws -> T) async throws -> T {
        guard let recorder else {
            return try await RequestTrace.$current.withValue(parent ?? RequestTrace.makeNew()) { try await body() }
        }
        return try await recorder.inSpan(name, kind: kind, parent: parent, attributes: attributes(), body)
    }

    /// Now, in nanoseconds since 1970.
    public static func now() -> UInt64 { wallClock(monotonic: CallClock.nanoseconds()) }

    /// A `CallClock` reading (a server call's start, `ServerContext.startNanoseconds`) in
    /// nanoseconds since 1970: placed on the wall clock by the two clocks' offset, so a span's
    /// times come from the reading the call already made, and its duration cannot jump with
    /// the wall clock. The offset is read again every time the exporter wakes (`reanchor`):
    /// a change of the system's time reaches the spans within a tenth of a second.
    public static func wallClock(monotonic: UInt64) -> UInt64 {
        UInt64(bitPattern: Int64(bitPattern: monotonic) &+ wallClockOffset.load(ordering: .relaxed))
    }

    /// Reads the two clocks' offset again (see `wallClock(monotonic:)`).
    static func reanchor() { wallClockOffset.store(currentWallClockOffset(), ordering: .relaxed) }

    /// The wall clock less `CallClock`, in nanoseconds; kept by `reanchor`.
    private static let wallClockOffset = Atomic<Int64>(currentWallClockOffset())

    private static func currentWallClockOffset() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec) &- Int64(bitPattern: CallClock.nanoseconds())
    }

    /// The span's status for an error: its message (an `RPCError`'s code and message).
    static func describe(_ error: any Error) -> String {
        if let error = error as? RPCError { return "\(error.code): \(error.message)" }
        return "\(error)"
    }

    /// The gRPC status code an error ends a call with.
    static func code(of error: any Error) -> RPCError.Code {
        (error as? RPCError)?.code ?? (error is CancellationError ? .cancelled : .unknown)
    }

    /// Whether a server span with this code is an error (OpenTelemetry's gRPC conventions: only
    /// the codes that mean the server failed; a client span is an error for any code but OK).
    static func isServerError(_ code: RPCError.Code) -> Bool {
        switch code {
        case .unknown, .deadlineExceeded, .unimplemented, .internal, .unavailable, .dataLoss: true
        default: false
        }
    }
}

extension RequestTrace {
    /// The 32 hex digits of the trace id in a `traceparent` (checked or made by this module).
    public static func traceID(_ traceparent: String) -> String {
        let bytes = traceparent.utf8
        guard bytes.count == 55 else { return "" }
        return String(traceparent[traceparent.utf8.index(traceparent.startIndex, offsetBy: 3)..<traceparent.utf8.index(traceparent.startIndex, offsetBy: 35)])
    }

    /// The 16 hex digits of the span id in a `traceparent`.
    public static func spanID(_ traceparent: String) -> String {
        let bytes = traceparent.utf8
        guard bytes.count == 55 else { return "" }
        return String(traceparent[traceparent.utf8.index(traceparent.startIndex, offsetBy: 36)..<traceparent.utf8.index(traceparent.startIndex, offsetBy: 52)])
    }
}

/// Keeps the spans this process ends and sends them to an OpenTelemetry collector over OTLP/gRPC
/// (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, through our own RPC client),
/// in batches: every `flushInterval`, or sooner once `maxBatch` are waiting.
///
/// Recording never blocks and never fails the operation: the queue is bounded (`maxQueued`), and
/// a span that finds it full is dropped and counted; a batch the collector does not take (it is
/// down, slow or refuses) is dropped and counted too (`fabrikam_otlp_spans_dropped_total`, by
/// reason), and the failure is logged once until an export succeeds again.
public final class SpanRecorder: Sendable {
    public let serviceName: String
    public let maxQueued: Int
    public let maxBatch: Int
    public let flushInterval: Duration
    let client: RPCClient
    /// The one event loop the collector's connection and the export loop both run on.
    let exportLoop: any EventLoop
    let host: String
    let port: Int
    /// The bytes of every export's request before its spans (the process's resource).
    let exportHeader: OTLPExportHeader
    /// The spans ended and not yet exported, already encoded (see `PendingSpans`).
    private let queue: Mutex<PendingSpans>
    private let exporter = Mutex<Task<Void, Never>?>(nil)
    private let exportLock = Mutex<Bool>(false)
    private let failing = Mutex<Bool>(false)
    private let droppedFull: Counter
    private let droppedExport: Counter
    private let exported: Counter
    let logger = Logger(label: "fabrikam.otlp")

    /// The collector's service and method.
    public static let exportMethod = MethodDescriptor(service: "opentelemetry.proto.collector.trace.v1.TraceService", name: "Export",
                                                      inputType: "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
                                                      outputType: "opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse",
                                                      clientStreaming: false, serverStreaming: false, isIdempotent: false, httpRule: nil)

    public init(host: String, port: Int, serviceName: String, flushInterval: Duration = .seconds(1), maxQueued: Int = 8192, maxBatch: Int = 512) {
        self.host = host
        self.port = port
        self.serviceName = serviceName
        self.flushInterval = flushInterval
        self.maxQueued = maxQueued
        self.maxBatch = maxBatch
        exportHeader = OTLPExportHeader(serviceName: serviceName)
        // Room for 64 spans of some 320 bytes to start with (fewer when a batch holds fewer).
        queue = Mutex(PendingSpans(batchCapacity: 320 * min(maxBatch, 64)))
        // No interceptors: exporting is not traced (it would trace itself), nor retried (the next
        // batch is the retry), nor counted as one of the service's calls. One event loop for the
        // connection and the export loop (`start`): an export then starts its call and takes
        // its response on the thread it runs on, where a task on the cooperative pool had its
        // thread woken and put to sleep around every export.
        exportLoop = MultiThreadedEventLoopGroup.singleton.next()
        client = RPCClient(host: host, port: port, options: .defaults {
            $0.connectTimeout = .seconds(1)
            $0.tls = nil
        }, group: exportLoop)
        MetricsEndpoint.describe("fabrikam_otlp_spans_dropped_total", "Spans not exported: the queue was full, or the collector did not take the batch.")
        MetricsEndpoint.describe("fabrikam_otlp_spans_exported_total", "Spans the OTLP collector accepted.")
        droppedFull = Counter(label: "fabrikam_otlp_spans_dropped_total", dimensions: [("reason", "queue_full")])
        droppedExport = Counter(label: "fabrikam_otlp_spans_dropped_total", dimensions: [("reason", "export_failed")])
        exported = Counter(label: "fabrikam_otlp_spans_exported_total")
    }

    /// Spans ended and not yet exported, encoded as they ended: `Span` messages as they appear
    /// in `ScopeSpans.spans`, in batches of at most `maxBatch`. Encoding a span when it ends
    /// costs what encoding it at export did, but nothing is kept of it but bytes: a queued span
    /// struct was copied into the queue, out of it and destroyed, a retain and a release per
    /// string each time, which the profile of a traced call showed as a tenth of its cost.
    struct PendingSpans {
        /// Batches that reached `maxBatch` spans, with their counts.
        var full: [(spans: OTLPEncoding.Writer, count: Int)] = []
        var current = OTLPEncoding.Writer(capacity: 0)
        var currentCount = 0
        var count = 0
        /// The room a new batch starts with: the size the last full one reached (and some), so
        /// a batch is allocated once. Grown from a few spans' worth, a batch of 512 was copied
        /// three times as it doubled, each time into fresh memory.
        var batchCapacity: Int
        /// The fields of each method an RPC span was recorded for, made on its first span.
        var methods: [OTLPEncoding.RPCMethodFields] = []
        /// The most methods kept: a process serves and calls a few dozen at most; past that, a
        /// span's method fields are made for it alone.
        static let maxMethods = 256

        /// Everything queued, moved out; the queue starts again empty, with the same room and
        /// the same methods.
        mutating func takeAll() -> [(spans: OTLPEncoding.Writer, count: Int)] {
            var batches = full
            if currentCount > 0 { batches.append((current, currentCount)) }
            self = PendingSpans(batchCapacity: batchCapacity, methods: methods)
            return batches
        }

        /// The fields of the method at `path` (see `OTLPEncoding.RPCMethodFields`).
        mutating func methodFields(for path: String) -> OTLPEncoding.RPCMethodFields {
            let count = path.utf8.count
            for fields in methods where fields.path.utf8.count == count && fields.path == path { return fields }
            let made = OTLPEncoding.RPCMethodFields(path: path)
            if methods.count < Self.maxMethods { methods.append(made) }
            return made
        }

        init(batchCapacity: Int, methods: [OTLPEncoding.RPCMethodFields] = []) {
            self.batchCapacity = batchCapacity
            self.methods = methods
        }
    }

    /// Queues an ended span for export; drops it (counted) when the queue is full.
    public func record(_ span: FinishedSpan) {
        enqueue { writer, _ in writer.message(2, lengthBytes: 2) { OTLPEncoding.encode(span, into: &$0) } }
    }

    /// Queues the span of an RPC (server or client side) for export, as
    /// `record(FinishedSpan(rpc: ...))` would, without making the struct: the tracing
    /// interceptors call this once per traced call. `path` is the method's
    /// (`/package.Service/Method`; passing the whole `MethodDescriptor` copied its strings).
    public func recordRPC(path: String, code: RPCError.Code, traceparent: String, parentTraceparent: String, traceState: String,
                          kind: SpanKind, start: UInt64, end: UInt64, error: String?) {
        enqueue(rpcPath: path) { writer, method in
            OTLPEncoding.encodeRPCSpan(method: method!, code: code, traceparent: traceparent, parentTraceparent: parentTraceparent,
                                       traceState: traceState, kind: kind, start: start, end: end, error: error, into: writer)
        }
    }

    /// Encodes one span (a `ScopeSpans.spans` field) at the end of the current batch, under the
    /// lock (a span is some forty small writes: shorter than a second buffer's copy would save
    /// in contention). An RPC span's encoder gets its method's fields (`rpcPath`'s).
    private func enqueue(rpcPath: String? = nil, _ encode: (inout OTLPEncoding.Writer, OTLPEncoding.RPCMethodFields?) -> Void) {
        let accepted = queue.withLock { pending in
            guard pending.count < maxQueued else { return false }
            if pending.currentCount == 0 { pending.current = OTLPEncoding.Writer(capacity: pending.batchCapacity) }
            let method = rpcPath.map { pending.methodFields(for: $0) }
            encode(&pending.current, method)
            pending.currentCount += 1
            pending.count += 1
            if pending.currentCount == maxBatch {
                pending.batchCapacity = pending.current.count + pending.current.count / 8
                pending.full.append((pending.current, pending.currentCount))
                pending.current = OTLPEncoding.Writer(capacity: 0)
                pending.currentCount = 0
            }
            return true
        }
        if !accepted { droppedFull.increment() }
    }

    /// Spans waiting for export.
    public var queuedCount: Int { queue.withLock { $0.count } }

    /// The spans waiting for export, decoded from their encoding (a recorder that was never
    /// started keeps every span: tests). An RPC span comes back named by its method, with its
    /// `rpc.*` attributes among the others.
    public var queuedSpans: [FinishedSpan] {
        let batches = queue.withLock { pending in pending.full.map(\.spans) + (pending.currentCount > 0 ? [pending.current] : []) }
        return batches.flatMap { $0.withBytes { OTLPEncoding.decodeSpans(scopeSpansFields: $0) } }
    }

    /// Starts the export loop (once).
    public func start() {
        exporter.withLock { task in
            guard task == nil else { return }
            task = Task.detached(executorPreference: EventLoopTaskExecutor(exportLoop)) { [self] in
                var last = ContinuousClock.now
                let tick = min(flushInterval, .milliseconds(100))
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    if Task.isCancelled { break }
                    Tracing.reanchor()
                    if queue.withLock({ !$0.full.isEmpty }) || ContinuousClock.now - last >= flushInterval {
                        await flush()
                        last = ContinuousClock.now
                    }
                }
            }
        }
    }

    /// Exports everything queued now (in batches of `maxBatch`); returns when done. Never throws.
    public func flush() async {
        // One export at a time: the loop and a shutdown's last flush must not send a batch twice.
        while exportLock.withLock({ busy in defer { busy = true }; return busy }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        defer { exportLock.withLock { $0 = false } }
        while true {
            // Everything queued, taken at once: the encoded batches are moved out, not copied.
            let batches = queue.withLock { $0.takeAll() }
            if batches.isEmpty { return }
            for batch in batches { await export(batch.spans, count: batch.count) }
        }
    }

    /// Sends one batch of encoded spans; counts it as exported or dropped.
    func export(_ spans: OTLPEncoding.Writer, count: Int) async {
        let header = exportHeader.bytes(spansCount: spans.count)
        do {
            try await client.unary(Self.exportMethod, encodedRequestSize: header.count + spans.count, writeRequest: { request in
                header.withUnsafeBytes { request.copyMemory(from: $0) }
                spans.withBytes { UnsafeMutableRawBufferPointer(rebasing: request[header.count...]).copyMemory(from: UnsafeRawBufferPointer($0)) }
            }, options: CallOptions(timeout: .seconds(5))) { (_: UnsafeRawBufferPointer) in () }
            exported.increment(by: Int64(count))
            if failing.withLock({ state in defer { state = false }; return state }) {
                logger.info("exporting spans again", metadata: ["collector": "\(host):\(port)"])
            }
        } catch {
            droppedExport.increment(by: Int64(count))
            if !failing.withLock({ state in defer { state = true }; return state }) {
                logger.warning("the OTLP collector did not take a batch of spans; they are dropped (logged once until an export succeeds)",
                               metadata: ["collector": "\(host):\(port)", "spans": "\(count)", "error": "\(error)"])
            }
        }
    }

    /// Stops the loop after a last flush, and closes the connection.
    public func shutdown() async {
        let task = exporter.withLock { task in defer { task = nil }; return task }
        task?.cancel()
        await task?.value
        await flush()
        await client.close()
    }

    /// Runs `body` in a new span under `parent` (nil: a new trace) and records it when `body`
    /// ends, with an error status if it throws.
    func inSpan<T>(_ name: String, kind: SpanKind, parent: CommonV1.TraceContext?, attributes: [SpanAttribute],
                   _ body: () async throws -> T) async throws -> T {
        let trace = parent.map(RequestTrace.child(of:)) ?? RequestTrace.makeNew()
        guard RequestTrace.isSampled(trace.traceparent) else {
            return try await RequestTrace.$current.withValue(trace) { try await body() }
        }
        let start = Tracing.now()
        var span = FinishedSpan(traceparent: trace.traceparent, parentTraceparent: RequestTrace.parentTraceparent(parent),
                                traceState: trace.tracestate, name: name,
                                kind: kind, start: start, end: start, attributes: attributes)
        do {
            let result = try await RequestTrace.$current.withValue(trace) { try await body() }
            span.end = Tracing.now()
            record(span)
            return result
        } catch {
            span.end = Tracing.now()
            span.error = Tracing.describe(error)
            record(span)
            throw error
        }
    }
}

/// What precedes one batch's spans in the request of `TraceService/Export`
/// (`ExportTraceServiceRequest`: resource_spans = 1, one `ResourceSpans` of this process, whose
/// one `ScopeSpans` holds the batch). The batch is already `ScopeSpans.spans` fields as the
/// recorder queued them, so an export writes these few bytes and copies the batch once, into
/// the outgoing frame: building a message to encode copied every batch four times more, each
/// into freshly allocated memory (a tenth of a traced call's cost, in its profile).
struct OTLPExportHeader: Sendable {
    /// `ResourceSpans.resource` (1), whole: the process's `Resource` (its attributes).
    let resourceField: [UInt8]
    /// `ScopeSpans.scope` (1), whole: the `InstrumentationScope` that records the spans.
    let scopeField: [UInt8]

    init(serviceName: String) {
        let resource = OTLPEncoding.Writer(capacity: 256)
        resource.message(1) { resource in
            OTLPEncoding.keyValue(&resource, field: 1, SpanAttribute("service.name", serviceName))
            OTLPEncoding.keyValue(&resource, field: 1, SpanAttribute("service.namespace", "fabrikam"))
            OTLPEncoding.keyValue(&resource, field: 1, SpanAttribute("telemetry.sdk.language", "swift"))
            OTLPEncoding.keyValue(&resource, field: 1, SpanAttribute("telemetry.sdk.name", "fabrikam-servicekit"))
        }
        let scope = OTLPEncoding.Writer(capacity: 64)
        scope.message(1) { scope in
            scope.string(1, "fabrikam.servicekit")
            scope.string(2, "1")
        }
        resourceField = resource.bytes
        scopeField = scope.bytes
    }

    /// The request's bytes up to the spans, for `spansCount` bytes of them:
    /// resource_spans = 1 { resource = 1, scope_spans = 2 { scope = 1, then the spans } }.
    func bytes(spansCount: Int) -> [UInt8] {
        let scopeSpans = scopeField.count + spansCount
        let resourceSpans = resourceField.count + 1 + OTLPEncoding.varintSize(scopeSpans) + scopeSpans
        let writer = OTLPEncoding.Writer(capacity: 32 + resourceField.count + scopeField.count)
        writer.tag(1, 2)
        writer.varint(UInt64(resourceSpans))
        writer.append(resourceField)
        writer.tag(2, 2)
        writer.varint(UInt64(scopeSpans))
        writer.append(scopeField)
        return writer.bytes
    }
}

/// The OTLP trace messages this process sends, encoded by hand: a faithful subset of
/// opentelemetry-proto (`opentelemetry/proto/{trace,resource,common}/v1/*.proto`; the field
/// numbers are upstream's, and the test's receiver decodes them with the OpenTelemetry project's
/// own generated code from PyPI's opentelemetry-proto).
enum OTLPEncoding {
    /// Protobuf's wire format written into one growing buffer, through a pointer: every span
    /// is some forty small writes (tags, varints, ids), and an array's append checks its
    /// uniqueness and capacity on each. Nested messages are written in place after room kept
    /// for their length; strings and ids go straight into the buffer.
    ///
    /// Sendable because its one user at a time owns it: an export's encoder, or the recorder's
    /// queue under its lock.
    struct Writer: @unchecked Sendable {
        private let storage: Storage

        /// A writer with room for `capacity` bytes before it grows.
        init(capacity: Int = 1024) { storage = Storage(capacity: max(capacity, 16)) }

        /// The bytes written so far.
        var bytes: [UInt8] { Array(UnsafeBufferPointer(start: storage.pointer, count: storage.count)) }

        /// How many bytes are written.
        var count: Int { storage.count }

        /// Reads the bytes written so far in place.
        func withBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
            try body(UnsafeBufferPointer(start: storage.pointer, count: storage.count))
        }

        /// The buffer: grown by doubling, freed with the writer.
        final class Storage {
            var pointer: UnsafeMutablePointer<UInt8>
            var count = 0
            var capacity: Int

            init(capacity: Int) {
                pointer = .allocate(capacity: capacity)
                self.capacity = capacity
            }

            /// Room for `extra` more bytes.
            @inline(__always) func reserve(_ extra: Int) {
                guard count + extra > capacity else { return }
                var grown = capacity * 2
                while grown < count + extra { grown *= 2 }
                let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
                larger.update(from: pointer, count: count)
                pointer.deallocate()
                pointer = larger
                capacity = grown
            }

            @inline(__always) func append(_ byte: UInt8) {
                reserve(1)
                pointer[count] = byte
                count += 1
            }

            deinit { pointer.deallocate() }
        }

        /// Room for `bytes` more bytes (a caller that knows the total asks once).
        func reserve(_ bytes: Int) { storage.reserve(bytes) }

        /// Writes exactly `count` bytes straight into the buffer through `body`, which gets
        /// where to write (a caller that computed the size first: no length to fix up after).
        func appendRaw(count: Int, _ body: (inout RawCursor) -> Void) {
            storage.reserve(count)
            var cursor = RawCursor(pointer: storage.pointer + storage.count)
            body(&cursor)
            assert(cursor.pointer == storage.pointer + storage.count + count, "wrote another size than it computed")
            storage.count += count
        }

        func varint(_ value: UInt64) {
            storage.reserve(10)
            var value = value
            while value >= 0x80 {
                storage.pointer[storage.count] = UInt8(truncatingIfNeeded: value) | 0x80
                storage.count += 1
                value >>= 7
            }
            storage.pointer[storage.count] = UInt8(value)
            storage.count += 1
        }

        func tag(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }

        /// A string field, left out when empty (proto3's default).
        func string(_ field: UInt64, _ text: String) {
            guard !text.isEmpty else { return }
            bytes(field, text.utf8)
        }

        /// A length-delimited field holding `content`, written even when empty.
        func bytes(_ field: UInt64, _ content: some Collection<UInt8>) {
            tag(field, 2)
            varint(UInt64(content.count))
            append(content)
        }

        /// `content` as it is.
        func append<Content: Collection<UInt8>>(_ content: Content) {
            let length = content.count
            storage.reserve(length)
            let copied: Void? = content.withContiguousStorageIfAvailable { source in
                guard let base = source.baseAddress else { return }
                (storage.pointer + storage.count).update(from: base, count: length)
            }
            if copied == nil {
                var offset = storage.count
                for byte in content {
                    storage.pointer[offset] = byte
                    offset += 1
                }
            }
            storage.count += length
        }

        /// A nested message, written in place after room for its length's varint
        /// (`lengthBytes`: 1 up to 127 bytes, 2 up to 16,383); only a message whose length
        /// needs another size moves its bytes.
        func message(_ field: UInt64, lengthBytes reserved: Int = 1, _ build: (inout Writer) -> Void) {
            tag(field, 2)
            let start = storage.count
            storage.reserve(reserved)
            storage.count += reserved
            var nested = self
            build(&nested)
            let length = storage.count - start - reserved
            var size = 1
            while length >> (7 * size) > 0 { size += 1 }
            if size != reserved {
                storage.reserve(size - reserved)
                let body = storage.pointer + start + reserved
                memmove(storage.pointer + start + size, body, length)  // the ranges overlap
                storage.count += size - reserved
            }
            for offset in 0..<size {
                let group = UInt8(truncatingIfNeeded: length >> (7 * offset)) & 0x7f
                storage.pointer[start + offset] = offset < size - 1 ? group | 0x80 : group
            }
        }

        func fixed64(_ field: UInt64, _ value: UInt64) {
            tag(field, 1)
            storage.reserve(8)
            withUnsafeBytes(of: value.littleEndian) { UnsafeMutableRawPointer(storage.pointer + storage.count).copyMemory(from: $0.baseAddress!, byteCount: 8) }
            storage.count += 8
        }

        func fixed32(_ field: UInt64, _ value: UInt32) {
            tag(field, 5)
            storage.reserve(4)
            withUnsafeBytes(of: value.littleEndian) { UnsafeMutableRawPointer(storage.pointer + storage.count).copyMemory(from: $0.baseAddress!, byteCount: 4) }
            storage.count += 4
        }

        /// The hex digits at `digits` of a `traceparent` (3..<35: the trace id, 36..<52: the
        /// span id) as the bytes they spell; nothing when it is not one.
        func id(_ field: UInt64, _ traceparent: String, _ digits: Range<Int>) {
            guard traceparent.utf8.count == 55 else { return }
            func value(_ digit: UInt8) -> UInt8 { hexValue(digit) ?? 0 }
            tag(field, 2)
            varint(UInt64(digits.count / 2))
            storage.reserve(digits.count / 2)
            // Through a local pointer, the count moved once: the storage's properties are a
            // class's, and each access of them per byte was an exclusivity check.
            let target = storage.pointer + storage.count
            let write = { (text: UnsafeBufferPointer<UInt8>) in
                for (offset, index) in stride(from: digits.lowerBound, to: digits.upperBound, by: 2).enumerated() {
                    target[offset] = value(text[index]) << 4 | value(text[index + 1])
                }
            }
            if traceparent.utf8.withContiguousStorageIfAvailable(write) == nil { Array(traceparent.utf8).withUnsafeBufferPointer(write) }
            storage.count += digits.count / 2
        }
    }

    /// `common.v1.KeyValue`: key = 1, value = 2 (`AnyValue`: string_value = 1, bool_value = 2,
    /// int_value = 3).
    static func keyValue(_ writer: inout Writer, field: UInt64, _ attribute: SpanAttribute) {
        switch attribute.value {
        case .string(let text): keyValue(&writer, field: field, key: attribute.key, string: text.utf8)
        case .bool(let flag): keyValue(&writer, field: field, key: attribute.key) { $0.tag(2, 0); $0.varint(flag ? 1 : 0) }
        case .int(let number): keyValue(&writer, field: field, key: attribute.key, int: number)
        }
    }

    static func keyValue(_ writer: inout Writer, field: UInt64, key: String, string: some Collection<UInt8>) {
        keyValue(&writer, field: field, key: key) { $0.bytes(1, string) }
    }

    static func keyValue(_ writer: inout Writer, field: UInt64, key: String, int: Int64) {
        keyValue(&writer, field: field, key: key) { $0.tag(3, 0); $0.varint(UInt64(bitPattern: int)) }
    }

    static func keyValue(_ writer: inout Writer, field: UInt64, key: String, value: (inout Writer) -> Void) {
        writer.message(field) { keyValue in
            keyValue.string(1, key)
            keyValue.message(2, value)
        }
    }

    /// `trace.v1.Span`: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5,
    /// kind = 6, start_time_unix_nano = 7 (fixed64), end_time_unix_nano = 8 (fixed64),
    /// attributes = 9, status = 15 (`Status`: message = 2, code = 3; ERROR = 2), flags = 16
    /// (fixed32; the W3C trace flags: sampled).
    static func encode(_ span: FinishedSpan, into writer: inout Writer) {
        encodeSpan(traceparent: span.traceparent, parentTraceparent: span.parentTraceparent, traceState: span.traceState, kind: span.kind,
                   start: span.start, end: span.end, rpc: span.rpc, name: span.plainName, attributes: span.attributes, error: span.error, into: &writer)
    }

    /// A span from its parts (`rpc`: an RPC span's method path and status code, which name it
    /// and make its `rpc.*` attributes; nil: a span named `name`).
    static func encodeSpan(traceparent: String, parentTraceparent: String, traceState: String, kind: SpanKind, start: UInt64, end: UInt64,
                           rpc: (path: String, code: RPCError.Code)?, name: String, attributes: [SpanAttribute], error: String?,
                           into writer: inout Writer) {
        writer.id(1, traceparent, 3..<35)
        writer.id(2, traceparent, 36..<52)
        writer.string(3, traceState)
        writer.id(4, parentTraceparent, 36..<52)
        if let rpc {
            writer.bytes(5, rpc.path.utf8.dropFirst())
        } else {
            writer.string(5, name)
        }
        writer.tag(6, 0)
        writer.varint(kind.rawValue)
        writer.fixed64(7, start)
        writer.fixed64(8, end)
        if let rpc {
            // OpenTelemetry's RPC conventions.
            let (service, method) = FinishedSpan.serviceAndMethod(rpc.path)
            keyValue(&writer, field: 9, key: "rpc.system", string: "grpc".utf8)
            keyValue(&writer, field: 9, key: "rpc.service", string: service)
            keyValue(&writer, field: 9, key: "rpc.method", string: method)
            keyValue(&writer, field: 9, key: "rpc.grpc.status_code", int: Int64(rpc.code.rawValue))
        }
        for attribute in attributes { keyValue(&writer, field: 9, attribute) }
        if let error {
            writer.message(15) { status in
                status.string(2, error)
                status.tag(3, 0)
                status.varint(2)
            }
        }
        writer.fixed32(16, 1)
    }

    /// An RPC span's fields that depend only on its method, encoded once per method: its name
    /// (`name` = 5, `package.Service/Method`) and the `rpc.system`, `rpc.service` and
    /// `rpc.method` attributes (9, OpenTelemetry's RPC conventions). Splitting the path and
    /// sizing these fields was a fifth of a traced call's encoding; a span now copies them.
    struct RPCMethodFields: Sendable {
        /// The method's `:path`, `/package.Service/Method`.
        let path: String
        /// The `name` field, whole.
        let name: [UInt8]
        /// The three attribute fields, whole.
        let attributes: [UInt8]

        init(path: String) {
            self.path = path
            let name = Writer(capacity: path.utf8.count + 4)
            name.bytes(5, path.utf8.dropFirst())
            let attributes = Writer(capacity: 64 + 2 * path.utf8.count)
            var writer = attributes
            let (service, method) = FinishedSpan.serviceAndMethod(path)
            OTLPEncoding.keyValue(&writer, field: 9, key: "rpc.system", string: "grpc".utf8)
            OTLPEncoding.keyValue(&writer, field: 9, key: "rpc.service", string: service)
            OTLPEncoding.keyValue(&writer, field: 9, key: "rpc.method", string: method)
            self.name = name.bytes
            self.attributes = attributes.bytes
        }
    }

    /// An RPC span as a `ScopeSpans.spans` field (see the other `encodeRPCSpan`), its method's
    /// fields made here: for a span whose method is not cached (tests, and more methods than
    /// the recorder keeps).
    static func encodeRPCSpan(path: String, code: RPCError.Code, traceparent: String, parentTraceparent: String, traceState: String,
                              kind: SpanKind, start: UInt64, end: UInt64, error: String?, into writer: Writer) {
        encodeRPCSpan(method: RPCMethodFields(path: path), code: code, traceparent: traceparent, parentTraceparent: parentTraceparent,
                      traceState: traceState, kind: kind, start: start, end: end, error: error, into: writer)
    }

    /// An RPC span as a `ScopeSpans.spans` field: the bytes `encodeSpan` writes for it
    /// (`SpanEncoderTests` checks they are the same; `SpanEncodingTests` decodes them with
    /// OpenTelemetry's code), written straight: the sizes of the nested messages are computed
    /// first, so nothing is moved or fixed up, and no closure or class property is touched per
    /// field. It runs once per traced call.
    static func encodeRPCSpan(method: RPCMethodFields, code: RPCError.Code, traceparent: String, parentTraceparent: String, traceState: String,
                              kind: SpanKind, start: UInt64, end: UInt64, error: String?, into writer: Writer) {
        let hasIDs = traceparent.utf8.count == 55, hasParent = parentTraceparent.utf8.count == 55
        let stateCount = traceState.utf8.count
        let errorCount = error?.utf8.count ?? 0
        let statusSize = error == nil ? 0 : (errorCount > 0 ? 1 + varintSize(errorCount) + errorCount : 0) + 2
        let codeValue = UInt64(code.rawValue)

        var body = (hasIDs ? 18 + 10 : 0) + (stateCount > 0 ? 1 + varintSize(stateCount) + stateCount : 0) + (hasParent ? 10 : 0)
        body += method.name.count + 2 + 9 + 9 + method.attributes.count + 6
        body += keyValueSize(key: 20, int: codeValue)
        if error != nil { body += 1 + varintSize(statusSize) + statusSize }

        writer.appendRaw(count: 1 + varintSize(body) + body) { out in
            out.byte(0x12)  // ScopeSpans.spans = 2
            out.varint(UInt64(body))
            if hasIDs {
                out.byte(0x0A); out.byte(16); out.hexID(traceparent, from: 3, bytes: 16)  // trace_id = 1
                out.byte(0x12); out.byte(8); out.hexID(traceparent, from: 36, bytes: 8)  // span_id = 2
            }
            if stateCount > 0 { out.byte(0x1A); out.varint(UInt64(stateCount)); out.utf8(traceState) }  // trace_state = 3
            if hasParent { out.byte(0x22); out.byte(8); out.hexID(parentTraceparent, from: 36, bytes: 8) }  // parent_span_id = 4
            out.bytes(method.name)  // name = 5
            out.byte(0x30); out.byte(UInt8(kind.rawValue))  // kind = 6
            out.byte(0x39); out.fixed64(start)  // start_time_unix_nano = 7
            out.byte(0x41); out.fixed64(end)  // end_time_unix_nano = 8
            out.bytes(method.attributes)  // rpc.system, rpc.service, rpc.method
            out.keyValue(key: "rpc.grpc.status_code", keyCount: 20, int: codeValue)
            if let error {  // status = 15: message = 2, code = 3 (ERROR)
                out.byte(0x7A); out.varint(UInt64(statusSize))
                if errorCount > 0 { out.byte(0x12); out.varint(UInt64(errorCount)); out.utf8(error) }
                out.byte(0x18); out.byte(2)
            }
            out.byte(0x85); out.byte(0x01); out.fixed32(1)  // flags = 16 (fixed32): sampled
        }
    }

    /// The four bytes that eight hex digits spell, all at once: `digits` holds the digits'
    /// ASCII codes as read from memory (the first digit in the low byte), and the result
    /// stores the bytes in their order. A digit's value without a branch: '0'-'9' are
    /// 0x30-0x39, 'a'-'f' and 'A'-'F' are 0x61-0x66 and 0x41-0x46 (bit 6 set: add 9 to the low
    /// four bits). One digit at a time was a tenth of a traced call's encoding.
    @inline(__always) static func hexBytes(eightDigits digits: UInt64) -> UInt32 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let digits = UInt64(littleEndian: digits)
        let values = (digits & (ones * 0x0F)) &+ ((digits >> 6) & ones) &* 9
        // Each 16-bit lane: its first digit's value as the high nibble, its second's as the low.
        let pairs = ((values & 0x000F_000F_000F_000F) << 4) | ((values >> 8) & 0x000F_000F_000F_000F)
        // The four lanes' low bytes, packed together in order.
        let packed = (pairs | (pairs >> 8)) & 0x0000_FFFF_0000_FFFF
        return UInt32(truncatingIfNeeded: packed | (packed >> 16)).littleEndian
    }

    /// The bytes of a varint.
    @inline(__always) static func varintSize(_ value: some BinaryInteger) -> Int {
        let bits = 64 - (UInt64(value) | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    /// The bytes of a `KeyValue` field (attributes = 9) holding a string of `string` bytes.
    static func keyValueSize(key: Int, string: Int) -> Int {
        keyValueSize(key: key, value: 1 + varintSize(string) + string)
    }

    /// The bytes of a `KeyValue` field holding an int.
    static func keyValueSize(key: Int, int: UInt64) -> Int { keyValueSize(key: key, value: 1 + varintSize(int)) }

    static func keyValueSize(key: Int, value: Int) -> Int {
        let content = 1 + varintSize(key) + key + 1 + varintSize(value) + value
        return 1 + varintSize(content) + content
    }

    /// Where `Writer.appendRaw` writes: bytes in order, no checks (the caller reserved them).
    struct RawCursor {
        var pointer: UnsafeMutablePointer<UInt8>

        @inline(__always) mutating func byte(_ value: UInt8) {
            pointer.pointee = value
            pointer += 1
        }

        @inline(__always) mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                byte(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            byte(UInt8(value))
        }

        mutating func fixed64(_ value: UInt64) {
            UnsafeMutableRawPointer(pointer).storeBytes(of: value.littleEndian, as: UInt64.self)
            pointer += 8
        }

        mutating func fixed32(_ value: UInt32) {
            UnsafeMutableRawPointer(pointer).storeBytes(of: value.littleEndian, as: UInt32.self)
            pointer += 4
        }

        /// `count` bytes of `text`'s UTF-8 from byte `offset` (all of it by default).
        mutating func utf8(_ text: String, from offset: Int = 0, count: Int? = nil) {
            let count = count ?? text.utf8.count - offset
            guard count > 0 else { return }
            let target = pointer
            let copied: Void? = text.utf8.withContiguousStorageIfAvailable { source in
                target.update(from: source.baseAddress! + offset, count: count)
            }
            if copied == nil { _ = UnsafeMutableBufferPointer(start: target, count: count).initialize(from: text.utf8.dropFirst(offset).prefix(count)) }
            pointer += count
        }

        /// `bytes` as they are.
        @inline(__always) mutating func bytes(_ bytes: [UInt8]) {
            let target = pointer
            bytes.withUnsafeBufferPointer { target.update(from: $0.baseAddress!, count: $0.count) }
            pointer += bytes.count
        }

        /// The bytes that `bytes * 2` hex digits of `text` from `offset` spell (checked as a
        /// `traceparent` before: every digit is 0-9, a-f or A-F; `bytes` a multiple of 4).
        mutating func hexID(_ text: String, from offset: Int, bytes: Int) {
            let target = pointer
            let write = { (digits: UnsafeBufferPointer<UInt8>) in
                for word in 0..<(bytes / 4) {
                    let eight = UnsafeRawPointer(digits.baseAddress! + offset + 8 * word).loadUnaligned(as: UInt64.self)
                    UnsafeMutableRawPointer(target + 4 * word).storeBytes(of: OTLPEncoding.hexBytes(eightDigits: eight), as: UInt32.self)
                }
            }
            if text.utf8.withContiguousStorageIfAvailable(write) == nil { Array(text.utf8).withUnsafeBufferPointer(write) }
            pointer += bytes
        }

        /// A `KeyValue` field (attributes = 9) whose value is a string of `stringCount` bytes
        /// that `value` writes.
        mutating func keyValue(key: StaticString, keyCount: Int, stringCount: Int = 4, _ value: (inout RawCursor) -> Void) {
            let any = 1 + varintSize(stringCount) + stringCount
            keyValueHeader(key: key, keyCount: keyCount, any: any)
            byte(0x0A)  // AnyValue.string_value = 1
            varint(UInt64(stringCount))
            value(&self)
        }

        /// A `KeyValue` field whose value is an int.
        mutating func keyValue(key: StaticString, keyCount: Int, int: UInt64) {
            keyValueHeader(key: key, keyCount: keyCount, any: 1 + varintSize(int))
            byte(0x18)  // AnyValue.int_value = 3
            varint(int)
        }

        private mutating func keyValueHeader(key: StaticString, keyCount: Int, any: Int) {
            let content = 1 + varintSize(keyCount) + keyCount + 1 + varintSize(any) + any
            byte(0x4A)  // Span.attributes = 9
            varint(UInt64(content))
            byte(0x0A)  // KeyValue.key = 1
            varint(UInt64(keyCount))
            pointer.update(from: key.utf8Start, count: keyCount)
            pointer += keyCount
            byte(0x12)  // KeyValue.value = 2
            varint(UInt64(any))
        }
    }

    /// The spans of `ScopeSpans` fields as `encodeSpan` wrote them, back as `FinishedSpan`s
    /// (what `SpanRecorder.queuedSpans` shows). Reads only what this encoder writes: other
    /// fields are skipped, and bytes that are not such fields end the list.
    static func decodeSpans(scopeSpansFields bytes: UnsafeBufferPointer<UInt8>) -> [FinishedSpan] {
        var reader = Reader(bytes: bytes[...])
        var spans: [FinishedSpan] = []
        while let (field, wireType) = reader.tag() {
            guard field == 2, wireType == 2, let body = reader.lengthDelimited() else { reader.skip(wireType); continue }
            if let span = decodeSpan(Reader(bytes: body)) { spans.append(span) }
        }
        return spans
    }

    private static func decodeSpan(_ reader: Reader) -> FinishedSpan? {
        var reader = reader
        var traceID = "", spanID = "", parentID = "", traceState = "", name = "", error: String?
        var kind = SpanKind.internal, start: UInt64 = 0, end: UInt64 = 0
        var attributes: [SpanAttribute] = []
        func hex(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
            bytes.map { String(format: "%02x", $0) }.joined()
        }
        while let (field, wireType) = reader.tag() {
            switch (field, wireType) {
            case (1, 2): traceID = reader.lengthDelimited().map(hex) ?? ""
            case (2, 2): spanID = reader.lengthDelimited().map(hex) ?? ""
            case (3, 2): traceState = reader.string() ?? ""
            case (4, 2): parentID = reader.lengthDelimited().map(hex) ?? ""
            case (5, 2): name = reader.string() ?? ""
            case (6, 0): kind = SpanKind(rawValue: reader.varint() ?? 1) ?? .internal
            case (7, 1): start = reader.fixed64() ?? 0
            case (8, 1): end = reader.fixed64() ?? 0
            case (9, 2):
                guard let body = reader.lengthDelimited() else { return nil }
                if let attribute = decodeKeyValue(Reader(bytes: body)) { attributes.append(attribute) }
            case (15, 2):
                guard let body = reader.lengthDelimited() else { return nil }
                var status = Reader(bytes: body)
                while let (statusField, statusType) = status.tag() {
                    if statusField == 2, statusType == 2 { error = status.string() } else { status.skip(statusType) }
                }
                if error == nil { error = "" }
            default: reader.skip(wireType)
            }
        }
        guard traceID.utf8.count == 32, spanID.utf8.count == 16 else { return nil }
        return FinishedSpan(traceparent: "00-\(traceID)-\(spanID)-01", parentTraceparent: parentID.isEmpty ? "" : "00-\(traceID)-\(parentID)-01",
                            traceState: traceState, name: name, kind: kind, start: start, end: end, attributes: attributes, error: error)
    }

    private static func decodeKeyValue(_ reader: Reader) -> SpanAttribute? {
        var reader = reader
        var key = "", value: SpanAttribute.Value?
        while let (field, wireType) = reader.tag() {
            if field == 1, wireType == 2 { key = reader.string() ?? ""; continue }
            guard field == 2, wireType == 2, let body = reader.lengthDelimited() else { reader.skip(wireType); continue }
            var any = Reader(bytes: body)
            while let (anyField, anyType) = any.tag() {
                switch (anyField, anyType) {
                case (1, 2): value = .string(any.string() ?? "")
                case (2, 0): value = .bool(any.varint() == 1)
                case (3, 0): value = .int(Int64(bitPattern: any.varint() ?? 0))
                default: any.skip(anyType)
                }
            }
        }
        guard let value else { return nil }
        var attribute = SpanAttribute(key, "")
        attribute.value = value
        return attribute
    }

    /// Protobuf's wire format read from a buffer: each read returns nil (and reads no further)
    /// at the end or at bytes that are not what it reads.
    struct Reader {
        var bytes: Slice<UnsafeBufferPointer<UInt8>>

        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = bytes.first, shift < 64 {
                bytes = bytes.dropFirst()
                value |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            bytes = bytes[bytes.endIndex...]
            return nil
        }

        mutating func tag() -> (field: UInt64, wireType: UInt64)? {
            guard !bytes.isEmpty, let key = varint() else { return nil }
            return (key >> 3, key & 7)
        }

        mutating func lengthDelimited() -> Slice<UnsafeBufferPointer<UInt8>>? {
            guard let length = varint(), length <= UInt64(bytes.count) else { bytes = bytes[bytes.endIndex...]; return nil }
            let body = bytes.prefix(Int(length))
            bytes = bytes.dropFirst(Int(length))
            return body
        }

        mutating func string() -> String? { lengthDelimited().map { String(decoding: $0, as: UTF8.self) } }

        mutating func fixed64() -> UInt64? {
            guard bytes.count >= 8 else { bytes = bytes[bytes.endIndex...]; return nil }
            let value = bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            bytes = bytes.dropFirst(8)
            return value
        }

        /// Skips a field's value of `wireType` (the ones this encoder writes); anything else ends the read.
        mutating func skip(_ wireType: UInt64) {
            switch wireType {
            case 0: _ = varint()
            case 1: bytes = bytes.count >= 8 ? bytes.dropFirst(8) : bytes[bytes.endIndex...]
            case 2: _ = lengthDelimited()
            case 5: bytes = bytes.count >= 4 ? bytes.dropFirst(4) : bytes[bytes.endIndex...]
            default: bytes = bytes[bytes.endIndex...]
            }
        }
    }
}
