import HTTP2
import NIOCore
import NIOPosix
import ProtobufKit
import Synchronization

/// Per-call settings.
public struct CallOptions: Sendable {
    /// How long the call may take; sent as `grpc-timeout` and enforced locally. It covers the
    /// whole call: waiting for a connection, and every attempt of a retrying interceptor.
    public var timeout: Duration?
    /// Custom metadata sent with the request headers.
    public var metadata = Metadata()
    /// Compress request messages with gzip.
    public var compressRequests = false
    /// Whether the call may be retried; nil takes the method's `idempotency_level`.
    public var isIdempotent: Bool?
    /// Wait for the server to be reachable instead of failing at once (gRPC's wait-for-ready).
    ///
    /// Off (the default), a call fails fast with UNAVAILABLE when no connection to the target
    /// can be made. On, the call waits, reconnecting with backoff, until a connection is up or
    /// the call's timeout passes (DEADLINE_EXCEEDED); without a timeout it waits until its task
    /// is cancelled. For calls that are worth waiting for, such as a worker's first call to a
    /// service that starts beside it.
    public var waitForReady = false

    public init(timeout: Duration? = nil, metadata: Metadata = Metadata(), compressRequests: Bool = false, isIdempotent: Bool? = nil,
                waitForReady: Bool = false) {
        self.timeout = timeout
        self.metadata = metadata
        self.compressRequests = compressRequests
        self.isIdempotent = isIdempotent
        self.waitForReady = waitForReady
    }
}

/// The full outcome of a unary call: the response with the server's metadata.
public struct UnaryResponse<Message: Sendable>: Sendable {
    public var message: Message
    public var initialMetadata: Metadata
    public var trailingMetadata: Metadata
    /// Whether the response arrived with its compressed flag set.
    public var messageWasCompressed = false
}

/// A gRPC client for one target: every address `host` resolves to (or a fixed list of
/// endpoints), one HTTP/2 connection per address, calls spread round-robin.
///
/// Connections open on first use (concurrent first calls share one attempt) and again after the
/// server closes one or sends GOAWAY; an address that fails to connect backs off exponentially.
/// The name is looked up off the event loops, again every `NameResolution.interval` and soon
/// after a connection fails; a lookup that fails or finds nothing keeps the addresses in use.
/// Calls the server never processed (REFUSED_STREAM, streams above a GOAWAY's last stream id)
/// are sent again once, on another connection, without the caller seeing it.
public final class RPCClient: Sendable {
    public struct Options: Sendable {
        public var maxMessageSize = 4 * 1024 * 1024
        public var connectTimeout: Duration = .seconds(5)
        /// Run around every call, outermost first.
        public var interceptors: [any ClientInterceptor] = []
        /// Keepalive (a PING every five minutes while calls are open, by default), idle timeout
        /// and abuse limits of each connection. A server that answers the pings with
        /// GOAWAY "too_many_pings" makes the client double the interval for its next connections.
        public var limits = HTTP2Limits.client
        /// How often the target name is looked up again (not used with fixed endpoints).
        public var resolution = NameResolution()
        /// Check every request against its field rules (`buf.validate`) before sending it: a
        /// request that breaks one fails at once with INVALID_ARGUMENT and a google.rpc.BadRequest
        /// naming every violated field, a local error (`RPCError.isLocal`), never retried. Off
        /// only for tests that must put an invalid request on the wire (to check a server).
        public var validatesRequests = true
        /// How many bytes of a client-streaming or bidirectional call's request messages are
        /// kept until the server answers, so that a stream it refused unprocessed can go again
        /// with them (`CurrentCall`); a call that writes more before any answer is not retried.
        public var replayBufferLimit = 256 * 1024
        /// TLS (nil: cleartext HTTP/2 with prior knowledge). The server's name is checked against
        /// its certificate (`ClientTLS.serverName`, else the host); files are read again when
        /// they change.
        public var tls: ClientTLS?
        /// Where the client's connections count the times a request waited for its server's
        /// flow-control window (by default the process's, which the metrics endpoint shows).
        public var flowControlStalls = FlowControlStalls.client
        /// Takes every call this client finishes, its messages and its status (consumer
        /// contracts). By default the process's `FileCallRecorder.environment`: nil unless
        /// `FABRIKAM_CONTRACT_RECORD` names a folder, so normally nothing is recorded.
        public var recorder: (any CallRecorder)? = FileCallRecorder.environment
        public init() {}

        public static func defaults(_ configure: (inout Self) -> Void) -> Self {
            var options = Self()
            configure(&options)
            return options
        }
    }

    public let host: String
    public let port: Int
    /// `host:port`, the `:authority` of every request.
    let authority: String
    let options: Options
    let group: any EventLoopGroup
    let pool: Mutex<Pool>
    let tlsContext = Mutex<ReloadingTLSContext?>(nil)

    /// Endpoints given explicitly instead of resolved from `host`.
    let fixedEndpoints: [SocketAddress]?

    /// A client for every address `host` resolves to (round-robin). An IP address is used as it
    /// is: nothing to look up, so no trip to the resolver's thread pool.
    public init(host: String, port: Int, options: Options = Options(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.authority = "\(host):\(port)"
        self.options = options
        self.group = group
        self.fixedEndpoints = (try? SocketAddress(ipAddress: host, port: port)).map { [$0] }
        self.pool = Mutex(Pool(keepaliveInterval: options.limits.keepaliveInterval))
    }

    /// A client for a fixed list of endpoints (round-robin), for example from configuration.
    public init(endpoints: [(host: String, port: Int)], options: Options = Options(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        guard let first = endpoints.first else { throw RPCError(.invalidArgument, "no endpoints given") }
        self.host = first.host
        self.port = first.port
        self.authority = "\(first.host):\(first.port)"
        self.options = options
        self.group = group
        self.fixedEndpoints = try endpoints.map { try SocketAddress(ipAddress: $0.host, port: $0.port) }
        self.pool = Mutex(Pool(keepaliveInterval: options.limits.keepaliveInterval))
    }

    /// Closes every connection; calls in flight end with UNAVAILABLE.
    public func close() async {
        let handles = pool.withLock { pool -> [ConnectionHandle] in
            defer { pool.connections = [:] }
            return Array(pool.connections.values)
        }
        for handle in handles { try? await handle.channel.close() }
    }

    /// The addresses calls are spread over now: the fixed endpoints, or what the name resolved
    /// to at the last lookup (empty before the first call).
    public var endpoints: [SocketAddress] {
        fixedEndpoints ?? pool.withLock { $0.addresses }
    }

    // MARK: Raw calls

    /// When the call must be over: its own timeout from now, bounded by the deadline of the call
    /// being handled (if this client is used inside a server handler), so deadlines propagate
    /// across hops.
    static func deadline(_ options: CallOptions) throws -> ContinuousClock.Instant? {
        guard let inherited = CallDeadline.current else { return options.timeout.map { .now + $0 } }
        let now = ContinuousClock.now
        if inherited <= now { throw RPCError(.deadlineExceeded, "the deadline of the calling request has passed", origin: .local) }
        return options.timeout.map { min(now + $0, inherited) } ?? inherited
    }

    /// Opens a call: sends the request headers (and, for a call with one request, that request
    /// and the end of the request stream) and returns the call's handle. One trip to the
    /// connection's event loop, none when the caller already runs on it (the gateway).
    ///
    /// Errors this client makes itself (metadata it cannot send, a request over the size limit)
    /// come before any connection is made, marked local (`RPCError.isLocal`).
    func startCall(_ method: MethodDescriptor, options: CallOptions, deadline: ContinuousClock.Instant?,
                   onlyRequest: (@Sendable (Compression?) throws -> ByteBuffer)? = nil) async throws -> ClientCall {
        var fields: [HeaderField] = []
        fields.reserveCapacity(10 + options.metadata.entries.count)
        fields.append(contentsOf: [
            HeaderField(":method", "POST"), HeaderField(":scheme", self.options.tls == nil ? "http" : "https"), HeaderField(":path", method.path),
            HeaderField(":authority", authority), HeaderField("content-type", "application/grpc"),
            HeaderField("te", "trailers"), HeaderField("user-agent", "fabrikam-rpc-swift/0.1"),
            HeaderField("grpc-accept-encoding", Compression.acceptEncoding),
        ])
        if options.compressRequests { fields.append(HeaderField("grpc-encoding", "gzip")) }
        let compression: Compression? = options.compressRequests ? .gzip : nil
        let body: ByteBuffer?
        do {
            try options.metadata.appendHeaderFields(to: &fields)
            body = try onlyRequest?(compression)
        } catch let error as RPCError {
            throw error.markedLocal()
        }
        let events = InboundQueue<ClientCallEvent>()
        // A connection that stops taking calls between being picked and the stream opening (a
        // GOAWAY in between) sent nothing: another connection is tried.
        var attempt = 0
        while true {
            let handle = try await connection(deadline: deadline, waitForReady: options.waitForReady)
            // The local deadline: the server enforces its own, but an unresponsive server must not
            // hold the caller past it (the connection keeps one timer for all its calls' deadlines).
            let timerDeadline: NIODeadline?
            if let deadline {
                let remaining = deadline - .now
                if remaining <= .zero { throw RPCError(.deadlineExceeded, "the deadline passed before the call could start") }
                if attempt > 0 { fields.removeLast() }
                fields.append(HeaderField("grpc-timeout", GRPCTimeout.format(remaining)))
                timerDeadline = NIODeadline.now() + .nanoseconds(remaining.nanosecondsClamped)
            } else {
                timerDeadline = nil
            }
            let state = handle.state
            let requestFields = fields
            let eventLoop = handle.channel.eventLoop
            do {
                let streamID = eventLoop.inEventLoop
                    ? try state.value.startCall(fields: requestFields, events: events, onlyRequest: body, deadline: timerDeadline)
                    : try await eventLoop.submit { try state.value.startCall(fields: requestFields, events: events, onlyRequest: body, deadline: timerDeadline) }.get()
                return ClientCall(streamID: streamID, state: state, events: events, compression: compression, maxMessageSize: self.options.maxMessageSize,
                                  validatesRequests: self.options.validatesRequests,
                                  recording: self.options.recorder == nil ? nil : CallRecording.current)
            } catch let error as RPCError where error.origin == .unprocessed && attempt < 3 {
                attempt += 1
            }
        }
    }

    /// Frames the one request of a unary or server-streaming call, checking its size.
    func framedRequest<Input: Message>(_ request: Input) -> @Sendable (Compression?) throws -> ByteBuffer {
        let maxSize = options.maxMessageSize
        let validates = options.validatesRequests
        if options.recorder != nil { CallRecording.current?.setOnlyRequest(request) }  // no task-local look-up per call otherwise
        return { compression in
            // Field rules first: a request that breaks one is refused before anything is sent
            // (startCall marks the error local).
            if validates { try RPCError.checkFieldRules(request) }
            return try frameMessage(request, compression: compression, maxSize: maxSize, allocator: ByteBufferAllocator(), direction: "request")
        }
    }

    // MARK: Typed calls

    /// Runs a call's body; task cancellation cancels the call (RST_STREAM), and surfaces as
    /// CANCELLED like any other way the call can end. Whatever way the body ends, the stream is
    /// closed: a body that throws (the caller's own error, a response that did not decode) resets
    /// a stream that is still open, so the server stops working on it and its slot is freed.
    func running<Result>(_ call: ClientCall, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await withTaskCancellationHandler(operation: body, onCancel: { call.cancel() })
        } catch is CancellationError {
            call.cancel()
            throw RPCError(.cancelled, "the call was cancelled")
        } catch {
            call.cancelIfOpen()
            throw error
        }
    }

    /// `running(_:_:)` for a call that may be restarted: cancellation and errors reach the
    /// attempt that is current when they happen.
    func running<Result>(_ current: CurrentCall, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await withTaskCancellationHandler(operation: body, onCancel: { current.call.cancel() })
        } catch is CancellationError {
            current.call.cancel()
            throw RPCError(.cancelled, "the call was cancelled")
        } catch {
            current.call.cancelIfOpen()
            throw error
        }
    }

    /// A call with one request: started, its response read by `collect`. A call the server did
    /// not process (REFUSED_STREAM, or a stream above the last stream id of a GOAWAY) goes once
    /// more, on a usable connection, within the same deadline: the caller sees only the outcome
    /// of that second attempt (gRPC's transparent retry, done once as grpc-go does).
    func oneRequestCall<Result>(_ method: MethodDescriptor, _ options: CallOptions, request: @escaping @Sendable (Compression?) throws -> ByteBuffer,
                                _ collect: (ClientCall) async throws -> Result) async throws -> Result {
        let deadline = try Self.deadline(options)
        let call = try await startCall(method, options: options, deadline: deadline, onlyRequest: request)
        do {
            return try await running(call) { try await collect(call) }
        } catch let error as RPCError where error.origin == .unprocessed {
            let again = try await startCall(method, options: options, deadline: deadline, onlyRequest: request)
            return try await running(again) { try await collect(again) }
        }
    }

    /// One request, one response.
    public func unary<M: MethodSpec>(_ method: M.Type, _ request: M.Input, options: CallOptions = CallOptions()) async throws -> M.Output {
        try await intercepted(M.descriptor, options) { options in
            try await oneRequestCall(M.descriptor, options, request: framedRequest(request)) { call in
                try await call.collectOneMessage(M.Output.self)
            }
        }
    }

    /// One request, one response, with the server's initial and trailing metadata.
    public func unaryWithMetadata<M: MethodSpec>(_ method: M.Type, _ request: M.Input, options: CallOptions = CallOptions()) async throws -> UnaryResponse<M.Output> {
        try await unary(M.descriptor, request, responseType: M.Output.self, options: options)
    }

    /// One request, one response, for a method known only at run time (the gateway, which
    /// routes by the descriptors embedded in the generated code).
    public func unary<Input: Message, Output: Message>(_ method: MethodDescriptor, _ request: Input, responseType: Output.Type,
                                                       options: CallOptions = CallOptions()) async throws -> UnaryResponse<Output> {
        try await intercepted(method, options) { options in
            try await oneRequestCall(method, options, request: framedRequest(request)) { call in
                try await call.collectOne(Output.self)
            }
        }
    }

    /// One request, one response, for a method and response type known only at run time (the
    /// gateway): the request is encoded straight into the outgoing frame, and `decode` reads
    /// the response in place from the received bytes (no intermediate arrays either way).
    public func unary<Response>(_ method: MethodDescriptor, _ request: some Message, options: CallOptions = CallOptions(),
                                decode: @escaping (UnsafeRawBufferPointer) throws -> Response) async throws -> Response {
        try await intercepted(method, options) { options in
            try await oneRequestCall(method, options, request: framedRequest(request)) { call in
                try await call.collectOne(decode)
            }
        }
    }

    /// One request whose protobuf bytes the caller writes itself, one response read in place
    /// by `decode`. For a caller that keeps its message encoded already (the span exporter,
    /// whose batches are OTLP bytes as they are queued): `write` fills exactly `size` bytes
    /// straight into the outgoing frame, where a `Message` would be built and encoded again.
    /// `write` may run more than once (a retried or transparently restarted call), so it must
    /// write the same bytes each time. The size limit and compression apply as to any request.
    public func unary<Response>(_ method: MethodDescriptor, encodedRequestSize size: Int,
                                writeRequest write: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Void,
                                options: CallOptions = CallOptions(), decode: @escaping (UnsafeRawBufferPointer) throws -> Response) async throws -> Response {
        let maxSize = self.options.maxMessageSize
        let framed: @Sendable (Compression?) throws -> ByteBuffer = { compression in
            try checkMessageSize(size, maxSize: maxSize, direction: "request")
            if compression != nil {
                let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                    write(UnsafeMutableRawBufferPointer(buffer))
                    count = size
                }
                return try frameMessage(bytes, compression: compression, allocator: ByteBufferAllocator())
            }
            return frameUncompressed(size: size, allocator: ByteBufferAllocator(), write)
        }
        return try await intercepted(method, options) { options in
            try await oneRequestCall(method, options, request: framed) { call in
                try await call.collectOne(decode)
            }
        }
    }

    /// Runs a call through the interceptors; `body` may run more than once (a retrying interceptor).
    func intercepted<Result>(_ method: MethodDescriptor, _ options: CallOptions, _ body: (CallOptions) async throws -> Result) async throws -> Result {
        if self.options.interceptors.isEmpty { return try await recorded(method, options, body) }
        var result: Result?
        if self.options.interceptors.count == 1 {
            // One interceptor (the gateway's retry): called directly, without the chain's two
            // extra async levels per call.
            try await self.options.interceptors[0].intercept(method, options: options) { options in
                result = try await recorded(method, options, body)
            }
        } else {
            try await runClientInterceptors(self.options.interceptors, method, options) { options in
                result = try await recorded(method, options, body)
            }
        }
        guard let result else { throw RPCError(.internal, "an interceptor did not run the call") }
        return result
    }

    /// Runs one attempt of a call; with a recorder, its messages are collected on the way
    /// (`CallRecording.current`, read where requests are framed and responses arrive) and the
    /// whole call handed over when it ends. Each attempt a retrying interceptor makes is a call.
    func recorded<Result>(_ method: MethodDescriptor, _ options: CallOptions, _ body: (CallOptions) async throws -> Result) async throws -> Result {
        guard let recorder = self.options.recorder else { return try await body(options) }
        let recording = CallRecording(method: method.path)
        do {
            let result = try await CallRecording.$current.withValue(recording) { try await body(options) }
            recorder.record(recording.finished(nil))
            return result
        } catch {
            recorder.record(recording.finished(error))
            throw error
        }
    }

    /// One request, a stream of responses, read by `body`.
    public func serverStreaming<M: MethodSpec, Result: Sendable>(
        _ method: M.Type, _ request: M.Input, options: CallOptions = CallOptions(),
        _ body: (ResponseStream<M.Output>) async throws -> Result
    ) async throws -> Result {
        try await serverStreaming(M.descriptor, request, responseType: M.Output.self, options: options, body)
    }

    /// One request, a stream of responses, for a method known only at run time. A call the
    /// server refused unprocessed before anything was read goes once more, as a unary call does
    /// (`ResponseStream`'s `CurrentCall`); `body` sees only that second attempt.
    public func serverStreaming<Input: Message, Output: Message, Result: Sendable>(
        _ method: MethodDescriptor, _ request: Input, responseType: Output.Type, options: CallOptions = CallOptions(),
        _ body: (ResponseStream<Output>) async throws -> Result
    ) async throws -> Result {
        try await intercepted(method, options) { options in
            let deadline = try Self.deadline(options)
            let framed = framedRequest(request)
            let first = try await startCall(method, options: options, deadline: deadline, onlyRequest: framed)
            let current = CurrentCall(first) { [self] in
                try await startCall(method, options: options, deadline: deadline, onlyRequest: framed)
            }
            return try await running(current) {
                let result = try await body(ResponseStream(current))
                current.call.cancelIfOpen()
                return result
            }
        }
    }

    /// Starts a call whose requests the caller writes: refused unprocessed before the server
    /// answered anything, it goes once more with what was written (`CurrentCall`).
    func startStreamingCall(_ method: MethodDescriptor, _ options: CallOptions) async throws -> CurrentCall {
        let deadline = try Self.deadline(options)
        let first = try await startCall(method, options: options, deadline: deadline)
        return CurrentCall(first, replayLimit: self.options.replayBufferLimit) { [self] in
            try await startCall(method, options: options, deadline: deadline)
        }
    }

    /// A stream of requests written by `body`, one response.
    public func clientStreaming<M: MethodSpec>(
        _ method: M.Type, options: CallOptions = CallOptions(),
        _ body: (RequestWriter<M.Input>) async throws -> Void
    ) async throws -> UnaryResponse<M.Output> {
        try await intercepted(M.descriptor, options) { options in
            let current = try await startStreamingCall(M.descriptor, options)
            return try await running(current) {
                try await body(RequestWriter(current: current))
                current.finishRequests()
                return try await current.collectOne(M.Output.self)
            }
        }
    }

    /// Streams both ways: `body` writes requests and reads responses, in any interleaving.
    public func bidirectional<M: MethodSpec, Result: Sendable>(
        _ method: M.Type, options: CallOptions = CallOptions(),
        _ body: (RequestWriter<M.Input>, ResponseStream<M.Output>) async throws -> Result
    ) async throws -> Result {
        try await intercepted(M.descriptor, options) { options in
            let current = try await startStreamingCall(M.descriptor, options)
            return try await running(current) {
                let result = try await body(RequestWriter(current: current), ResponseStream(current))
                current.call.cancelIfOpen()
                return result
            }
        }
    }
}
