import ProtobufKit
import Synchronization

/// What a handler knows about its call, and how it adds response metadata.
public final class ServerContext: Sendable {
    public let method: MethodDescriptor
    /// The client's metadata (custom headers; protocol headers removed).
    public let metadata: Metadata
    /// When the client stops waiting (from `grpc-timeout`), if it said.
    public let deadline: ContinuousClock.Instant?
    /// The client's address.
    public let peer: String
    /// The request's `grpc-encoding` (nil when the client did not compress).
    public let requestEncoding: String?
    /// Whether the client accepts gzip-compressed responses (its `grpc-accept-encoding` lists
    /// gzip). Only then are responses ever compressed, whatever the handler asks.
    public let acceptsCompressedResponses: Bool
    /// When the call started (its HEADERS arrived), on `CallClock`: the one clock reading its
    /// metrics, its log line and its span measure from.
    public let startNanoseconds: UInt64

    private let state: Mutex<ResponseMetadata>

    struct ResponseMetadata {
        var initial = Metadata()
        var trailing = Metadata()
        var compressResponses = false
    }

    // Not inlined: inlined into ServerConnectionState.open, Swift 6.3.1's SIL optimizer
    // (TempLValueElimination) moved the deadline's store above this object's allocation, and
    // release builds of the RPC module aborted ("Instruction does not dominate all uses!").
    @inline(never)
    init(method: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peer: String, requestEncoding: String?,
         acceptsCompressedResponses: Bool = false, startNanoseconds: UInt64 = CallClock.nanoseconds()) {
        self.startNanoseconds = startNanoseconds
        self.requestEncoding = requestEncoding
        self.acceptsCompressedResponses = acceptsCompressedResponses
        // By default a call answers compressed when it was asked compressed (and the client accepts it).
        state = Mutex(ResponseMetadata(compressResponses: requestEncoding != nil && acceptsCompressedResponses))
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peer = peer
    }

    /// A context for calling a handler directly, in process (tests, or a caller that embeds a
    /// service): no wire, no deadline unless given.
    public static func inProcess(_ method: MethodDescriptor? = nil, metadata: Metadata = Metadata(),
                                 deadline: ContinuousClock.Instant? = nil) -> ServerContext {
        let method = method ?? MethodDescriptor(service: "in-process", name: "call", inputType: "", outputType: "",
                                                clientStreaming: false, serverStreaming: false, isIdempotent: false, httpRule: nil)
        return ServerContext(method: method, metadata: metadata, deadline: deadline, peer: "in-process", requestEncoding: nil)
    }

    /// Adds metadata to the response headers (before the first response message is written).
    public func addInitialMetadata(_ name: String, _ value: String) { state.withLock { $0.initial.add(name, value) } }
    public func addInitialMetadata(_ name: String, binary: [UInt8]) { state.withLock { $0.initial.add(name, binary: binary) } }
    /// Adds metadata to the trailers sent with the status.
    public func addTrailingMetadata(_ name: String, _ value: String) { state.withLock { $0.trailing.add(name, value) } }
    public func addTrailingMetadata(_ name: String, binary: [UInt8]) { state.withLock { $0.trailing.add(name, binary: binary) } }

    /// Compress response messages with gzip: the handler's choice for the whole call, which
    /// `ResponseWriter.write(_:compressed:)` can override per message.
    ///
    /// Takes effect only when the client accepts gzip (`acceptsCompressedResponses`), as gRPC's
    /// compression rules require; otherwise every response goes uncompressed. Decide before the
    /// first response message: the response headers, sent with it, name gzip only if this is on
    /// or that first message asks for compression, and no later message can be compressed
    /// unless they did. On by default when the request itself was compressed.
    ///
    /// ```swift
    /// context.compressResponses = true   // a large, compressible response
    /// return response
    /// ```
    public var compressResponses: Bool {
        get { state.withLock { $0.compressResponses } }
        set { state.withLock { $0.compressResponses = newValue } }
    }

    var initialMetadata: Metadata { state.withLock { $0.initial } }
    var trailingMetadata: Metadata { state.withLock { $0.trailing } }
}
