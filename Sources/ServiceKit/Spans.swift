import CoreMetrics
import DroneDeliveryAPI
import Foundation
import Logging
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
    private var plainName: String
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
        let flush = environment["FABRIKAM_OTLP_FLUSH_MS"].flatMap { Int($0) } ?? 1000
        let recorder = SpanRecorder(host: host, port: port, serviceName: environment["OTEL_SERVICE_NAME"] ?? serviceName,
                                    flushInterval: .milliseconds(max(10, flush)))
        recorder.start()
        configured = recorder
        return recorder
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
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
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
    let host: String
    let port: Int
    private let queue = Mutex<[FinishedSpan]>([])
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
        // No interceptors: exporting is not traced (it would trace itself), nor retried (the next
        // batch is the retry), nor counted as one of the service's calls.
        client = RPCClient(host: host, port: port, options: .defaults {
            $0.connectTimeout = .seconds(1)
            $0.tls = nil
        })
        MetricsEndpoint.describe("fabrikam_otlp_spans_dropped_total", "Spans not exported: the queue was full, or the collector did not take the batch.")
        MetricsEndpoint.describe("fabrikam_otlp_spans_exported_total", "Spans the OTLP collector accepted.")
        droppedFull = Counter(label: "fabrikam_otlp_spans_dropped_total", dimensions: [("reason", "queue_full")])
        droppedExport = Counter(label: "fabrikam_otlp_spans_dropped_total", dimensions: [("reason", "export_failed")])
        exported = Counter(label: "fabrikam_otlp_spans_exported_total")
    }

    /// Queues an ended span for export; drops it (counted) when the queue is full.
    public func record(_ span: FinishedSpan) {
        let accepted = queue.withLock { queue in
            guard queue.count < maxQueued else { return false }
            queue.append(span)
            return true
        }
        if !accepted { droppedFull.increment() }
    }

    /// Spans waiting for export.
    public var queuedCount: Int { queue.withLock { $0.count } }

    /// The spans waiting for export (a recorder that was never started keeps every span: tests).
    public var queuedSpans: [FinishedSpan] { queue.withLock { $0 } }

    /// Starts the export loop (once).
    public func start() {
        exporter.withLock { task in
            guard task == nil else { return }
            task = Task.detached { [self] in
                var last = ContinuousClock.now
                let tick = min(flushInterval, .milliseconds(100))
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    if Task.isCancelled { break }
                    if queuedCount >= maxBatch || ContinuousClock.now - last >= flushInterval {
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
            // Everything queued, taken at once: the spans are moved out, not copied (copying a
            // batch and shifting the rest down cost a retain and a release per string).
            let pending = queue.withLock { queue -> [FinishedSpan] in
                let pending = queue
                queue = []
                queue.reserveCapacity(min(maxQueued, pending.count))
                return pending
            }
            if pending.isEmpty { return }
            for first in stride(from: 0, to: pending.count, by: maxBatch) {
                await export(pending[first..<min(first + maxBatch, pending.count)])
            }
        }
    }

    /// Sends one batch; counts it as exported or dropped.
    func export(_ batch: ArraySlice<FinishedSpan>) async {
        let request = OTLPExportRequest(resourceSpans: OTLPEncoding.resourceSpans(batch, serviceName: serviceName))
        do {
            try await client.unary(Self.exportMethod, request, options: CallOptions(timeout: .seconds(5))) { (_: UnsafeRawBufferPointer) in () }
            exported.increment(by: Int64(batch.count))
            if failing.withLock({ state in defer { state = false }; return state }) {
                logger.info("exporting spans again", metadata: ["collector": "\(host):\(port)"])
            }
        } catch {
            droppedExport.increment(by: Int64(batch.count))
            if !failing.withLock({ state in defer { state = true }; return state }) {
                logger.warning("the OTLP collector did not take a batch of spans; they are dropped (logged once until an export succeeds)",
                               metadata: ["collector": "\(host):\(port)", "spans": "\(batch.count)", "error": "\(error)"])
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

/// The request of `TraceService/Export` as its encoded fields: protobuf-c carries it as a
/// `google.protobuf.Empty` whose one unknown field (1, `resource_spans`) it writes back byte for
/// byte, so the RPC runtime sends exactly what `OTLPEncoding` wrote.
struct OTLPExportRequest: ProtobufKit.Message {
    static let protoMessageName = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
    var unknownFields = UnknownFields()

    init() {}

    init(resourceSpans: [UInt8]) {
        let payload = OTLPEncoding.Writer()
        payload.varint(UInt64(resourceSpans.count))
        payload.append(resourceSpans)
        unknownFields.fields = [UnknownFields.Field(number: 1, wireType: .lengthDelimited, payload: payload.bytes)]
    }

    static var _protobufCDescriptor: UnsafeRawPointer { Google.Protobuf.Empty._protobufCDescriptor }

    func _buildProtobufC(in arena: ProtobufCArena) -> UnsafeMutableRawPointer {
        var carrier = Google.Protobuf.Empty()
        carrier.unknownFields = unknownFields
        return carrier._buildProtobufC(in: arena)
    }

    init(_protobufC pointer: UnsafeRawPointer) throws {
        unknownFields = UnknownFields(_protobufC: pointer)
    }

    func _writeJSON(to writer: inout JSONWriter) throws {
        throw RPCError(.unimplemented, "an OTLP export request is sent in binary only")
    }

    init(_jsonScanner scanner: inout JSONScanner) throws {
        throw RPCError(.unimplemented, "an OTLP export request is read in binary only")
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
    struct Writer {
        private let storage = Storage()

        /// The bytes written so far.
        var bytes: [UInt8] { Array(UnsafeBufferPointer(start: storage.pointer, count: storage.count)) }

        /// The buffer: grown by doubling, freed with the writer.
        final class Storage {
            var pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1024)
            var count = 0
            var capacity = 1024

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

    /// `trace.v1.ResourceSpans` of one process: resource = 1 (`resource.v1.Resource`,
    /// attributes = 1), scope_spans = 2 (`ScopeSpans`: scope = 1 (`InstrumentationScope`:
    /// name = 1, version = 2), spans = 2).
    static func resourceSpans(_ spans: ArraySlice<FinishedSpan>, serviceName: String) -> [UInt8] {
        let writer = Writer()
        writer.reserve(256 + 320 * spans.count)  // an RPC span is about 250 bytes
        writer.message(1) { resource in
            keyValue(&resource, field: 1, SpanAttribute("service.name", serviceName))
            keyValue(&resource, field: 1, SpanAttribute("service.namespace", "fabrikam"))
            keyValue(&resource, field: 1, SpanAttribute("telemetry.sdk.language", "swift"))
            keyValue(&resource, field: 1, SpanAttribute("telemetry.sdk.name", "fabrikam-servicekit"))
        }
        writer.message(2, lengthBytes: 3) { scopeSpans in
            scopeSpans.message(1) { scope in
                scope.string(1, "fabrikam.servicekit")
                scope.string(2, "1")
            }
            // Read in place (iterating the slice copied each span: a retain and a release per string).
            spans.withUnsafeBufferPointer { spans in
                for index in spans.indices { scopeSpans.message(2, lengthBytes: 2) { encode(spans[index], into: &$0) } }
            }
        }
        return writer.bytes
    }

    /// `trace.v1.Span`: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5,
    /// kind = 6, start_time_unix_nano = 7 (fixed64), end_time_unix_nano = 8 (fixed64),
    /// attributes = 9, status = 15 (`Status`: message = 2, code = 3; ERROR = 2), flags = 16
    /// (fixed32; the W3C trace flags: sampled).
    static func encode(_ span: FinishedSpan, into writer: inout Writer) {
        writer.id(1, span.traceparent, 3..<35)
        writer.id(2, span.traceparent, 36..<52)
        writer.string(3, span.traceState)
        writer.id(4, span.parentTraceparent, 36..<52)
        if let rpc = span.rpc {
            writer.bytes(5, rpc.path.utf8.dropFirst())
        } else {
            writer.string(5, span.name)
        }
        writer.tag(6, 0)
        writer.varint(span.kind.rawValue)
        writer.fixed64(7, span.start)
        writer.fixed64(8, span.end)
        if let rpc = span.rpc {
            // OpenTelemetry's RPC conventions.
            let (service, method) = FinishedSpan.serviceAndMethod(rpc.path)
            keyValue(&writer, field: 9, key: "rpc.system", string: "grpc".utf8)
            keyValue(&writer, field: 9, key: "rpc.service", string: service)
            keyValue(&writer, field: 9, key: "rpc.method", string: method)
            keyValue(&writer, field: 9, key: "rpc.grpc.status_code", int: Int64(rpc.code.rawValue))
        }
        for attribute in span.attributes { keyValue(&writer, field: 9, attribute) }
        if let error = span.error {
            writer.message(15) { status in
                status.string(2, error)
                status.tag(3, 0)
                status.varint(2)
            }
        }
        writer.fixed32(16, 1)
    }
}
