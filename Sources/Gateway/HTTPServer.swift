#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RPC
import Synchronization

/// The gateway's listener: HTTP/1.1 (SwiftNIO's HTTP/1 codec, keep-alive and pipelining) and
/// HTTP/2 cleartext with prior knowledge (the project's nghttp2 layer) on the same port; with
/// `tls`, the same over TLS, HTTP/2 or HTTP/1.1 as the client's ALPN chooses (TLS terminates
/// here, and the sniffer below it sees the plaintext).
/// Each complete request goes to `Gateway.handle`; streamed answers are written chunk by chunk,
/// each write awaited, so a slow reader holds back its own stream only.
///
/// It protects itself (configuration's `listener`): connections over the caps (all clients, one
/// address) are closed as they are accepted; a request head, an HTTP/2 preface or a body that
/// is too slow to arrive, and an idle connection, are closed after their timeout.
public final class GatewayHTTPServer: Sendable {
    let gateway: Gateway
    let group: any EventLoopGroup
    private let channel = Mutex<(any Channel)?>(nil)
    let connections: ConnectionLimiter
    /// TLS for the listener (nil: cleartext), its files read again when they change.
    public let tls: ReloadingTLSContext?

    /// - Parameter tls: certificate and key (and a client CA to require client certificates);
    ///   ALPN offers `h2` and `http/1.1` whatever `tls.applicationProtocols` says. A file that
    ///   cannot be used throws here.
    public init(gateway: Gateway, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, tls: ServerTLS? = nil) throws {
        self.gateway = gateway
        self.group = group
        self.tls = try tls.map { settings in
            var settings = settings
            settings.applicationProtocols = ["h2", "http/1.1"]
            return try ReloadingTLSContext(settings)
        }
        let listener = gateway.configuration.listener
        connections = ConnectionLimiter(maxTotal: min(listener.maxConnections, Self.fileDescriptorLimit() - 256),
                                        maxPerAddress: listener.maxConnectionsPerAddress)
    }

    /// Connections open now (for tests and logs).
    public var openConnections: Int { connections.total }

    /// Binds and returns the port (the configured one, or a free one for port 0).
    public func start(host: String, port: Int) async throws -> Int {
        let gateway = gateway
        let maxBody = gateway.configuration.maxBodyBytes
        let timeouts = ListenerTimeouts(gateway.configuration.listener)
        let connections = connections
        let tls = tls
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let address = channel.remoteAddress?.ipAddress ?? "unknown"
                guard connections.admit(address) else {
                    // Over a cap: closed at once, before any byte is read.
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.release(address) }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current())) }
                    // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), told apart by the first bytes.
                    try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(gateway: gateway, maxBody: maxBody, timeouts: timeouts,
                                                                                   clientAddress: address))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        channel.withLock { $0 = bound }
        return bound.localAddress?.port ?? port
    }

    public func shutdown() async {
        let bound = channel.withLock { $0 }
        try? await bound?.close()
    }

    /// The process's soft limit on open files (RLIMIT_NOFILE).
    static func fileDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max / 2) else { return Int.max / 2 }
        return Int(limit.rlim_cur)
    }
}

/// The listener's timeouts, as SwiftNIO amounts.
struct ListenerTimeouts: Sendable {
    var header: TimeAmount
    var body: TimeAmount
    var idle: TimeAmount

    init(_ listener: GatewayConfiguration.Listener) {
        func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(max(0.001, seconds) * 1e9)) }
        header = amount(listener.headerTimeoutSeconds)
        body = amount(listener.bodyTimeoutSeconds)
        idle = amount(listener.idleTimeoutSeconds)
    }
}

/// Counts open connections, in all and per client address, against the listener's caps.
final class ConnectionLimiter: Sendable {
    private let maxTotal: Int
    private let maxPerAddress: Int
    private let state = Mutex<(total: Int, perAddress: [String: Int])>((0, [:]))

    init(maxTotal: Int, maxPerAddress: Int) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    var total: Int { state.withLock { $0.total } }

    /// Counts a new connection from `address`; false (and not counted) over a cap.
    func admit(_ address: String) -> Bool {
        state.withLock { state in
            let fromAddress = state.perAddress[address, default: 0]
            guard state.total < maxTotal, fromAddress < maxPerAddress else { return false }
            state.total += 1
            state.perAddress[address] = fromAddress + 1
            return true
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = left > 0 ? left : nil
        }
    }
}

/// Tells `HTTPRequestHandler` when bytes arrive, before the HTTP/1 decoder has made anything of
/// them: the first bytes of a request start its head's clock.
final class ByteArrivalObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let requests: HTTPRequestHandler

    init(_ requests: HTTPRequestHandler) {
        self.requests = requests
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        requests.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// Collects each request (head, body up to the limit, end) and answers it. Pipelined requests
/// are answered one at a time, in order.
///
/// This replaces SwiftNIO's pipelining helper, which stops reading while a response is pending
/// and resumes after: two epoll_ctl system calls per request on a keep-alive connection, a
/// measurable part of the gateway's cost. Here reading stops only when a client has more than
/// `maxQueued` requests waiting.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    /// Requests a client may pipeline ahead of the one being answered before reading pauses.
    static let maxQueued = 16

    let gateway: Gateway
    let maxBody: Int
    let clientAddress: String
    private var deadlines: HTTP1ReadDeadlines
    private var timer: Scheduled<Void>?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    /// Requests of this connection run on its event loop (no hop to the cooperative pool).
    private var executor: EventLoopTaskExecutor?
    /// Whether a request is being answered, and the complete requests waiting behind it.
    private var answering = false
    private var queued: [PendingRequest] = []
    private var readingPaused = false

    struct PendingRequest {
        var request: GatewayRequest
        var version: HTTPVersion
        var keepAlive: Bool
        var isHead: Bool
        /// Not a request: the bytes after the earlier requests were not HTTP/1.1. Answered with
        /// 400 in its turn (after the requests before it), then the connection closes.
        var parseError: (any Error)?
    }

    init(gateway: Gateway, maxBody: Int, timeouts: ListenerTimeouts, clientAddress: String) {
        self.gateway = gateway
        self.maxBody = maxBody
        self.clientAddress = clientAddress
        deadlines = HTTP1ReadDeadlines(header: timeouts.header, body: timeouts.body, idle: timeouts.idle, now: .now())
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armTimer(context: context, at: .now() + deadlines.tick)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    /// The first bytes of a request start its clock (see `HTTP1ReadDeadlines`).
    func bytesArrived() {
        deadlines.bytesArrived(at: .now())
    }

    private func armTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            bound.value.handler.timerFired(context: bound.value.context)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        switch deadlines.check(at: .now()) {
        case .checkAgain(let next):
            armTimer(context: context, at: next)
        case .expired(.idle):
            context.close(promise: nil)
        case .expired(.request(let reason)):
            queued = []
            let channel = context.channel
            guard !answering else {
                channel.close(promise: nil)  // an answer is being written: no room for a 408
                return
            }
            let answer = HTTP1Response.closing(GatewayError(408, 4, reason), allocator: channel.allocator)
            context.writeAndFlush(wrapOutboundOut(answer)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            deadlines.headReceived(at: .now())
            head = requestHead
            body = []
            tooLarge = false
        case .body(var buffer):
            // Over the limit: keep reading (so the connection stays usable) but drop the bytes.
            if body.count + buffer.readableBytes > maxBody { tooLarge = true }
            if !tooLarge, let bytes = buffer.readBytes(length: buffer.readableBytes) { body += bytes }
        case .end:
            guard let head else { return }
            self.head = nil
            deadlines.requestEnded()
            var request = GatewayRequest(method: head.method.rawValue, target: head.uri,
                                         lowercasedHeaders: head.headers.map { (GatewayRequest.lowercased($0.name), $0.value) },
                                         body: tooLarge ? [] : body)
            request.bodyLimitExceeded = tooLarge
            request.clientAddress = clientAddress
            body = []
            queued.append(PendingRequest(request: request, version: head.version, keepAlive: head.isKeepAlive, isHead: head.method == .HEAD,
                                         parseError: nil))
            if queued.count > Self.maxQueued && !readingPaused {
                readingPaused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            }
            answerNext(context: context)
        }
    }

    /// Starts answering the oldest waiting request, unless one is being answered.
    private func answerNext(context: ChannelHandlerContext) {
        guard !answering, !queued.isEmpty else { return }
        let next = queued.removeFirst()
        if let error = next.parseError {
            queued = []
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(HTTP1Response.badRequest(error, allocator: context.channel.allocator))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        answering = true
        if readingPaused && queued.count <= Self.maxQueued / 2 {
            readingPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
        let executor = self.executor ?? EventLoopTaskExecutor(context.eventLoop)
        self.executor = executor
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        Self.answer(next, gateway: gateway, channel: context.channel, executor: executor) {
            // On the event loop (the task's executor): the answer is written, the next may go.
            bound.value.handler.answering = false
            bound.value.handler.deadlines.answerFinished(at: .now())
            if next.keepAlive { bound.value.handler.answerNext(context: bound.value.context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queued = []
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    /// Input that is not HTTP/1.1 (the decoder's error): 400 once the requests before it are
    /// answered, then close. The decoder reads nothing more from this connection.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !queued.contains(where: { $0.parseError != nil }) else { return }
        let placeholder = GatewayRequest(method: "", target: "", lowercasedHeaders: [], body: [])
        queued.append(PendingRequest(request: placeholder, version: .http1_1, keepAlive: false, isHead: false, parseError: error))
        answerNext(context: context)
    }

    /// Runs the gateway for one request and writes its answer, in a task on the connection's
    /// event loop that starts at once (no queueing before the gateway's own work begins).
    static func answer(_ pending: PendingRequest, gateway: Gateway, channel: any Channel, executor: EventLoopTaskExecutor,
                       done: @escaping @Sendable () -> Void) {
        Task.immediate(executorPreference: executor) {
            let response = await gateway.handle(pending.request)
            await write(response, to: channel, version: pending.version, keepAlive: pending.keepAlive, isHead: pending.isHead)
            done()
        }
    }

    static func write(_ response: GatewayResponse, to channel: any Channel, version: HTTPVersion, keepAlive: Bool, isHead: Bool) async {
        switch response.body {
        case .bytes(let bytes):
            // Head and body in one buffer: one pipeline write and one socket write per answer.
            let hasBody = HTTP1Response.allowsBody(response.status)
            let sendsBody = hasBody && !isHead
            var buffer = channel.allocator.buffer(capacity: 128 + response.headers.count * 48 + (sendsBody ? bytes.count : 0))
            HTTP1Response.writeHead(response, version: version, keepAlive: keepAlive,
                                    framing: hasBody ? .contentLength(bytes.count) : .none, into: &buffer)
            if sendsBody { buffer.writeBytes(bytes) }
            // Not awaited: nothing follows a whole answer but, without keep-alive, the close.
            if keepAlive {
                channel.writeAndFlush(buffer, promise: nil)
            } else {
                channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
            }
        case .stream(let chunks):
            // HTTP/1.1 streams are chunked; an HTTP/1.0 client reads until the connection closes.
            let chunked = version.major == 1 && version.minor >= 1
            do {
                var head = channel.allocator.buffer(capacity: 256)
                // A HEAD answer to a stream closes the connection after its head: say so in it.
                HTTP1Response.writeHead(response, version: version, keepAlive: keepAlive && chunked && !isHead,
                                        framing: chunked ? .chunked : .untilClose, into: &head)
                try await channel.writeAndFlush(head)
                if !isHead {
                    for await chunk in chunks where !chunk.isEmpty {
                        var buffer = channel.allocator.buffer(capacity: chunk.count + 16)
                        if chunked { HTTP1Response.writeChunk(chunk, into: &buffer) } else { buffer.writeBytes(chunk) }
                        try await channel.writeAndFlush(buffer)
                    }
                    if chunked { try await channel.writeAndFlush(channel.allocator.buffer(staticString: "0\r\n\r\n")) }
                }
                if !keepAlive || !chunked || isHead { try await channel.close() }
            } catch {
                // The client went away: ending the loop drops the stream, which cancels the upstream call.
                try? await channel.close()
            }
        }
    }
}

/// HTTP/1.x response serialization. The gateway writes its answers as bytes itself instead of
/// through SwiftNIO's response encoder: a whole answer is one buffer, so one trip through the
/// pipeline and one socket write instead of three of each (measured in make bench-gateway).
enum HTTP1Response {
    /// How the body's end is marked.
    enum Framing {
        /// No body at all (1xx, 204, 304).
        case none
        case contentLength(Int)
        case chunked
        /// HTTP/1.0 streams: the body ends when the connection closes.
        case untilClose
    }

    /// 1xx, 204 and 304 answers never carry a body or a length (RFC 9110 section 6.4.1).
    static func allowsBody(_ status: Int) -> Bool {
        !(100..<200).contains(status) && status != 204 && status != 304
    }

    /// The status line and headers, ending with the empty line. The gateway's own answers never
    /// carry connection or framing headers: those are decided here.
    static func writeHead(_ response: GatewayResponse, version: HTTPVersion, keepAlive: Bool, framing: Framing, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(version.major == 1 && version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(response.status))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(HTTPResponseStatus(statusCode: response.status).reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in response.headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        switch framing {
        case .none, .untilClose: break
        case .contentLength(let count):
            buffer.writeStaticString("content-length: ")
            buffer.writeString(String(count))
            buffer.writeStaticString("\r\n")
        case .chunked:
            buffer.writeStaticString("transfer-encoding: chunked\r\n")
        }
        if !keepAlive {
            buffer.writeStaticString("connection: close\r\n")
        } else if version.major == 1 && version.minor == 0 {
            buffer.writeStaticString("connection: keep-alive\r\n")  // HTTP/1.0 closes unless told otherwise
        }
        buffer.writeStaticString("\r\n")
    }

    /// One chunk of a chunked body: its size in hex, the bytes, CRLF.
    static func writeChunk(_ chunk: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeString(String(chunk.count, radix: 16))
        buffer.writeStaticString("\r\n")
        buffer.writeBytes(chunk)
        buffer.writeStaticString("\r\n")
    }

    /// What a client whose request could not be parsed gets before the connection closes.
    static func badRequest(_ error: any Error, allocator: ByteBufferAllocator) -> ByteBuffer {
        closing(GatewayError(400, 3, "the request is not valid HTTP/1.1 (\(error))"), allocator: allocator)
    }

    /// An error answer that closes the connection after it.
    static func closing(_ error: GatewayError, allocator: ByteBufferAllocator) -> ByteBuffer {
        let answer = error.response
        var buffer = allocator.buffer(capacity: 256)
        guard case .bytes(let body) = answer.body else { return buffer }
        writeHead(answer, version: .http1_1, keepAlive: false, framing: .contentLength(body.count), into: &buffer)
        buffer.writeBytes(body)
        return buffer
    }
}
