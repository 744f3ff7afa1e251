import NIOCore
import NIOHTTP1
import NIOPosix
import RPC
import Synchronization

/// The gateway's listener: HTTP/1.1 (SwiftNIO's HTTP/1 codec, keep-alive and pipelining) and
/// HTTP/2 cleartext with prior knowledge (the project's nghttp2 layer) on the same port.
/// Each complete request goes to `Gateway.handle`; streamed answers are written chunk by chunk,
/// each write awaited, so a slow reader holds back its own stream only.
public final class GatewayHTTPServer: Sendable {
    let gateway: Gateway
    let group: any EventLoopGroup
    private let channel = Mutex<(any Channel)?>(nil)

    public init(gateway: Gateway, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.gateway = gateway
        self.group = group
    }

    /// Binds and returns the port (the configured one, or a free one for port 0).
    public func start(host: String, port: Int) async throws -> Int {
        let gateway = gateway
        let maxBody = gateway.configuration.maxBodyBytes
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), told apart by the first bytes.
                    try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(gateway: gateway, maxBody: maxBody))
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
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests a client may pipeline ahead of the one being answered before reading pauses.
    static let maxQueued = 16

    let gateway: Gateway
    let maxBody: Int
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
    }

    init(gateway: Gateway, maxBody: Int) {
        self.gateway = gateway
        self.maxBody = maxBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
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
            var request = GatewayRequest(method: head.method.rawValue, target: head.uri,
                                         lowercasedHeaders: head.headers.map { (GatewayRequest.lowercased($0.name), $0.value) },
                                         body: tooLarge ? [] : body)
            request.bodyLimitExceeded = tooLarge
            body = []
            queued.append(PendingRequest(request: request, version: head.version, keepAlive: head.isKeepAlive, isHead: head.method == .HEAD))
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
            if next.keepAlive { bound.value.handler.answerNext(context: bound.value.context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        queued = []
        context.fireChannelInactive()
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
        // The gateway's own answers never carry connection or content-length: these are set here.
        var headers = HTTPHeaders()
        headers.reserveCapacity(response.headers.count + 2)
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        switch response.body {
        case .bytes(let bytes):
            if response.status != 204 && response.status != 304 { headers.add(name: "content-length", value: String(bytes.count)) }
            channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)), promise: nil)
            if !bytes.isEmpty && !isHead { channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: bytes))), promise: nil) }
            // Not awaited: nothing follows a whole answer but, without keep-alive, the close.
            if keepAlive {
                channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: nil)
            } else {
                channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
            }
        case .stream(let chunks):
            do {
                try await channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)))
                for await chunk in chunks {
                    try await channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: chunk))))
                }
                try await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
                if !keepAlive { try await channel.close() }
            } catch {
                // The client went away: ending the loop drops the stream, which cancels the upstream call.
                try? await channel.close()
            }
        }
    }
}
