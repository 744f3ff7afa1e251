import HTTP2
import NIOCore
import NIOPosix
import ProtobufKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Per-call settings.
public struct CallOptions: Sendable {
    /// How long the call may take; sent as `grpc-timeout` and enforced locally.
    public var timeout: Duration?
    /// Custom metadata sent with the request headers.
    public var metadata = Metadata()
    /// Compress request messages with gzip.
    public var compressRequests = false
    /// Whether the call may be retried; nil takes the method's `idempotency_level`.
    public var isIdempotent: Bool?

    public init(timeout: Duration? = nil, metadata: Metadata = Metadata(), compressRequests: Bool = false, isIdempotent: Bool? = nil) {
        self.timeout = timeout
        self.metadata = metadata
        self.compressRequests = compressRequests
        self.isIdempotent = isIdempotent
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

/// A gRPC client for one target (`host:port`), over one HTTP/2 connection that it opens on first
/// use and opens again after the server closes it or sends GOAWAY.
public final class RPCClient: Sendable {
    public struct Options: Sendable {
        public var maxMessageSize = 4 * 1024 * 1024
        public var connectTimeout: Duration = .seconds(5)
        /// Run around every call, outermost first.
        public var interceptors: [any ClientInterceptor] = []
        /// Keepalive (a PING every five minutes while calls are open, by default), idle timeout
        /// and abuse limits of each connection.
        public var limits = HTTP2Limits.client
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
    private let pool = Mutex(Pool())

    /// An open connection: its channel and its loop-bound state.
    struct ConnectionHandle: Sendable {
        let channel: Channel
        let state: NIOLoopBound<ClientConnectionState>
        /// Whether the connection takes no new calls (GOAWAY or closed), readable from any thread.
        let status: ConnectionStatus
    }

    /// Connections per resolved address, picked round-robin; addresses that failed to connect
    /// wait out an exponential backoff before they are tried again.
    struct Pool {
        var addresses: [SocketAddress] = []
        var resolvedAt: ContinuousClock.Instant?
        var connections: [SocketAddress: ConnectionHandle] = [:]
        var backoff: [SocketAddress: (until: ContinuousClock.Instant, delay: Duration)] = [:]
        var next = 0
    }

    /// How often the target name is resolved again (endpoints come and go).
    static let resolveInterval: Duration = .seconds(30)

    /// Endpoints given explicitly instead of resolved from `host`.
    let fixedEndpoints: [SocketAddress]?

    /// A client for every address `host` resolves to (round-robin).
    public init(host: String, port: Int, options: Options = Options(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.authority = "\(host):\(port)"
        self.options = options
        self.group = group
        self.fixedEndpoints = nil
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
    }

    /// Closes every connection; calls in flight end with UNAVAILABLE.
    public func close() async {
        let handles = pool.withLock { pool -> [ConnectionHandle] in
            defer { pool.connections = [:] }
            return Array(pool.connections.values)
        }
        for handle in handles { try? await handle.channel.close() }
    }

    // MARK: Connections

    /// Every address the target name resolves to (IPv4 and IPv6), in the resolver's order.
    static func resolve(_ host: String, _ port: Int) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let raw = current.pointee.ai_addr {
                switch Int32(current.pointee.ai_family) {
                case AF_INET:
                    addresses.append(SocketAddress(raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }, host: host))
                case AF_INET6:
                    addresses.append(SocketAddress(raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }, host: host))
                default:
                    break
                }
            }
            entry = current.pointee.ai_next
        }
        var seen: Set<String> = []
        return addresses.filter { seen.insert($0.description).inserted }
    }

    /// The addresses calls are spread over (resolved again every `resolveInterval`).
    public var endpoints: [SocketAddress] {
        if let fixedEndpoints { return fixedEndpoints }
        let cached = pool.withLock { pool -> [SocketAddress]? in
            if let at = pool.resolvedAt, ContinuousClock.now - at < Self.resolveInterval, !pool.addresses.isEmpty { return pool.addresses }
            return nil
        }
        if let cached { return cached }
        let fresh = Self.resolve(host, port)
        pool.withLock {
            $0.addresses = fresh
            $0.resolvedAt = .now
        }
        return fresh
    }

    /// The next usable connection, round-robin over the endpoints, connecting as needed.
    func connection() async throws -> ConnectionHandle {
        let addresses = endpoints
        guard !addresses.isEmpty else { throw RPCError(.unavailable, "\(host) does not resolve to any address") }
        var lastError: Error?
        for _ in 0..<addresses.count {
            let (address, existing, waiting) = pool.withLock { pool -> (SocketAddress, ConnectionHandle?, Bool) in
                let address = addresses[pool.next % addresses.count]
                pool.next &+= 1
                let waiting = pool.backoff[address].map { ContinuousClock.now < $0.until } ?? false
                return (address, pool.connections[address], waiting)
            }
            if let existing, existing.channel.isActive, !existing.status.isDraining { return existing }
            if waiting { continue }
            do {
                let handle = try await connect(to: address)
                pool.withLock {
                    $0.connections[address] = handle
                    $0.backoff[address] = nil
                }
                return handle
            } catch {
                lastError = error
                pool.withLock { pool in
                    // Reconnect backoff: 100 ms doubling to 5 s.
                    let previous = pool.backoff[address]?.delay ?? .milliseconds(50)
                    let delay = min(previous * 2, .seconds(5))
                    pool.backoff[address] = (.now + delay, delay)
                }
            }
        }
        throw RPCError(.unavailable, "cannot connect to \(host):\(port) (\(addresses.count) address(es)): \(lastError.map { "\($0)" } ?? "all backing off")")
    }

    func connect(to address: SocketAddress) async throws -> ConnectionHandle {
        let maxMessageSize = options.maxMessageSize
        let limits = options.limits
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(options.connectTimeout.nanosecondsClamped))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Manual flow control (the default): responses are acknowledged as the caller
                    // reads them, so a slow reader pushes back on the server.
                    let session = try HTTP2Session(role: .client, settings: HTTP2Session.Settings())
                    let connection = HTTP2Connection(session: session, eventLoop: channel.eventLoop, limits: limits)
                    let state = ClientConnectionState(maxMessageSize: maxMessageSize)
                    state.connection = connection
                    connection.delegate = state
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .get()
        try await Self.refuseSelfConnection(channel)
        let (state, status) = try await channel.eventLoop.submit {
            let connection = try channel.pipeline.syncOperations.handler(type: HTTP2Connection.self)
            let state = connection.delegate as! ClientConnectionState
            return (NIOLoopBound(state, eventLoop: channel.eventLoop), state.status)
        }.get()
        return ConnectionHandle(channel: channel, state: state, status: status)
    }

    // MARK: Raw calls

    /// The call's timeout: its own, bounded by the deadline of the call being handled (if this
    /// client is used inside a server handler), so deadlines propagate across hops.
    static func effectiveTimeout(_ options: CallOptions) throws -> Duration? {
        guard let inherited = CallDeadline.current else { return options.timeout }
        let remaining = inherited - .now
        if remaining <= .zero { throw RPCError(.deadlineExceeded, "the deadline of the calling request has passed") }
        return options.timeout.map { min($0, remaining) } ?? remaining
    }

    /// Opens a call: sends the request headers (and, for a call with one request, that request
    /// and the end of the request stream) and returns the call's handle. One trip to the
    /// connection's event loop, none when the caller already runs on it (the gateway).
    func startCall(_ method: MethodDescriptor, options: CallOptions, onlyRequest: ((Compression?) throws -> ByteBuffer)? = nil) async throws -> ClientCall {
        var options = options
        options.timeout = try Self.effectiveTimeout(options)
        let handle = try await connection()
        var fields: [HeaderField] = []
        fields.reserveCapacity(10 + options.metadata.entries.count)
        fields.append(contentsOf: [
            HeaderField(":method", "POST"), HeaderField(":scheme", "http"), HeaderField(":path", method.path),
            HeaderField(":authority", authority), HeaderField("content-type", "application/grpc"),
            HeaderField("te", "trailers"), HeaderField("user-agent", "fabrikam-rpc-swift/0.1"),
            HeaderField("grpc-accept-encoding", Compression.acceptEncoding),
        ])
        if options.compressRequests { fields.append(HeaderField("grpc-encoding", "gzip")) }
        if let timeout = options.timeout { fields.append(HeaderField("grpc-timeout", GRPCTimeout.format(timeout))) }
        try options.metadata.appendHeaderFields(to: &fields)
        let compression: Compression? = options.compressRequests ? .gzip : nil
        let body = try onlyRequest?(compression)
        let events = InboundQueue<ClientCallEvent>()
        let state = handle.state
        let requestFields = fields
        let eventLoop = handle.channel.eventLoop
        // The local deadline: the server enforces its own, but an unresponsive server must not
        // hold the caller past it (the connection keeps one timer for all its calls' deadlines).
        let deadline = options.timeout.map { NIODeadline.now() + .nanoseconds($0.nanosecondsClamped) }
        let streamID = eventLoop.inEventLoop
            ? try state.value.startCall(fields: requestFields, events: events, onlyRequest: body, deadline: deadline)
            : try await eventLoop.submit { try state.value.startCall(fields: requestFields, events: events, onlyRequest: body, deadline: deadline) }.get()
        let call = ClientCall(streamID: streamID, state: state, events: events, compression: compression, maxMessageSize: self.options.maxMessageSize)
        return call
    }

    /// Frames the one request of a unary or server-streaming call, checking its size.
    func framedRequest<Input: Message>(_ request: Input) -> (Compression?) throws -> ByteBuffer {
        let maxSize = options.maxMessageSize
        return { compression in
            try frameMessage(request, compression: compression, maxSize: maxSize, allocator: ByteBufferAllocator(), direction: "request")
        }
    }

    // MARK: Typed calls

    /// Runs a call's body; task cancellation cancels the call (RST_STREAM), and surfaces as
    /// CANCELLED like any other way the call can end.
    func running<Result>(_ call: ClientCall, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await withTaskCancellationHandler(operation: body, onCancel: { call.cancel() })
        } catch is CancellationError {
            call.cancel()
            throw RPCError(.cancelled, "the call was cancelled")
        }
    }

    /// One request, one response.
    public func unary<M: MethodSpec>(_ method: M.Type, _ request: M.Input, options: CallOptions = CallOptions()) async throws -> M.Output {
        try await intercepted(M.descriptor, options) { options in
            let call = try await startCall(M.descriptor, options: options, onlyRequest: framedRequest(request))
            return try await running(call) {
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
            let call = try await startCall(method, options: options, onlyRequest: framedRequest(request))
            return try await running(call) {
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
            let call = try await startCall(method, options: options, onlyRequest: framedRequest(request))
            return try await running(call) {
                try await call.collectOne(decode)
            }
        }
    }

    /// Runs a call through the interceptors; `body` may run more than once (a retrying interceptor).
    func intercepted<Result>(_ method: MethodDescriptor, _ options: CallOptions, _ body: (CallOptions) async throws -> Result) async throws -> Result {
        if self.options.interceptors.isEmpty { return try await body(options) }
        var result: Result?
        try await runClientInterceptors(self.options.interceptors, method, options) { options in
            result = try await body(options)
        }
        guard let result else { throw RPCError(.internal, "an interceptor did not run the call") }
        return result
    }

    /// One request, a stream of responses, read by `body`.
    public func serverStreaming<M: MethodSpec, Result: Sendable>(
        _ method: M.Type, _ request: M.Input, options: CallOptions = CallOptions(),
        _ body: (ResponseStream<M.Output>) async throws -> Result
    ) async throws -> Result {
        try await serverStreaming(M.descriptor, request, responseType: M.Output.self, options: options, body)
    }

    /// One request, a stream of responses, for a method known only at run time.
    public func serverStreaming<Input: Message, Output: Message, Result: Sendable>(
        _ method: MethodDescriptor, _ request: Input, responseType: Output.Type, options: CallOptions = CallOptions(),
        _ body: (ResponseStream<Output>) async throws -> Result
    ) async throws -> Result {
        try await intercepted(method, options) { options in
            let call = try await startCall(method, options: options, onlyRequest: framedRequest(request))
            return try await running(call) {
                let result = try await body(ResponseStream(call: call))
                call.cancelIfOpen()
                return result
            }
        }
    }

    /// A stream of requests written by `body`, one response.
    public func clientStreaming<M: MethodSpec>(
        _ method: M.Type, options: CallOptions = CallOptions(),
        _ body: (RequestWriter<M.Input>) async throws -> Void
    ) async throws -> UnaryResponse<M.Output> {
        try await intercepted(M.descriptor, options) { options in
            let call = try await startCall(M.descriptor, options: options)
            return try await running(call) {
                try await body(RequestWriter(call: call))
                call.finishRequests()
                return try await call.collectOne(M.Output.self)
            }
        }
    }

    /// Streams both ways: `body` writes requests and reads responses, in any interleaving.
    public func bidirectional<M: MethodSpec, Result: Sendable>(
        _ method: M.Type, options: CallOptions = CallOptions(),
        _ body: (RequestWriter<M.Input>, ResponseStream<M.Output>) async throws -> Result
    ) async throws -> Result {
        try await intercepted(M.descriptor, options) { options in
            let call = try await startCall(M.descriptor, options: options)
            return try await running(call) {
                let result = try await body(RequestWriter(call: call), ResponseStream(call: call))
                call.cancelIfOpen()
                return result
            }
        }
    }
}
