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

/// Collects one request (head, body up to the limit, end) and answers it.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let gateway: Gateway
    let maxBody: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false
    /// Requests of this connection run on its event loop (no hop to the cooperative pool).
    private var executor: EventLoopTaskExecutor?

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
                                         headers: head.headers.map { ($0.name, $0.value) }, body: tooLarge ? [] : body)
            request.bodyLimitExceeded = tooLarge
            body = []
            let keepAlive = head.isKeepAlive
            let version = head.version
            let isHead = head.method == .HEAD
            let channel = context.channel
            let gateway = gateway
            let executor = self.executor ?? EventLoopTaskExecutor(context.eventLoop)
            self.executor = executor
            Self.answer(request, gateway: gateway, channel: channel, executor: executor, version: version, keepAlive: keepAlive, isHead: isHead)
        }
    }

    /// Runs the gateway for one request off the event loop and writes its answer.
    static func answer(_ request: GatewayRequest, gateway: Gateway, channel: any Channel, executor: EventLoopTaskExecutor,
                       version: HTTPVersion, keepAlive: Bool, isHead: Bool) {
        Task(executorPreference: executor) {
            let response = await gateway.handle(request)
            await write(response, to: channel, version: version, keepAlive: keepAlive, isHead: isHead)
        }
    }

    static func write(_ response: GatewayResponse, to channel: any Channel, version: HTTPVersion, keepAlive: Bool, isHead: Bool) async {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if !keepAlive { headers.replaceOrAdd(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        switch response.body {
        case .bytes(let bytes):
            if response.status != 204 && response.status != 304 { headers.replaceOrAdd(name: "content-length", value: String(bytes.count)) }
            let fixed = HTTPResponseHead(version: version, status: head.status, headers: headers)
            channel.write(HTTPServerResponsePart.head(fixed), promise: nil)
            if !bytes.isEmpty && !isHead { channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: bytes))), promise: nil) }
            try? await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
            if !keepAlive { try? await channel.close() }
        case .stream(let chunks):
            do {
                try await channel.writeAndFlush(HTTPServerResponsePart.head(head))
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
