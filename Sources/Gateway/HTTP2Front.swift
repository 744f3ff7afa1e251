import HTTP2
import NIOCore
import NIOHTTP1
import RPC

/// Looks at a new connection's first bytes: the HTTP/2 connection preface (prior knowledge,
/// "h2c") gets the project's nghttp2 layer (`HTTP2Connection`), anything else SwiftNIO's
/// HTTP/1.1 request decoder and `HTTPRequestHandler`. Then it steps out of the pipeline.
/// A connection that has not said which within the header timeout (silent, or an incomplete
/// preface) is closed.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    let gateway: Gateway
    let maxBody: Int
    let timeouts: ListenerTimeouts
    let clientAddress: String
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?

    init(gateway: Gateway, maxBody: Int, timeouts: ListenerTimeouts, clientAddress: String) {
        self.gateway = gateway
        self.maxBody = maxBody
        self.timeouts = timeouts
        self.clientAddress = clientAddress
    }

    func channelActive(context: ChannelHandlerContext) {
        // Held back: the protocol handlers added later get it once they exist.
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: timeouts.header) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var earlier = buffered {
            earlier.writeBuffer(&buffer)
            buffer = earlier
        }
        let count = min(buffer.readableBytes, Self.preface.count)
        let start = buffer.getBytes(at: buffer.readerIndex, length: count) ?? []
        do {
            if start != Array(Self.preface.prefix(count)) {
                // SwiftNIO's request decoder only: answers are written as bytes and pipelined
                // requests ordered by HTTPRequestHandler itself (see there why).
                let requests = HTTPRequestHandler(gateway: gateway, maxBody: maxBody, timeouts: timeouts, clientAddress: clientAddress)
                try context.pipeline.syncOperations.addHandler(ByteArrivalObserver(requests))
                try context.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                try context.pipeline.syncOperations.addHandler(requests)
            } else if count == Self.preface.count {
                let session = try HTTP2Session(role: .server)
                let metrics = gateway.metrics
                session.onFlowControlStall = { window in metrics.flowControlStalled(window) }
                // The preface is in: SETTINGS must follow within the header timeout, and a
                // connection without open streams closes after the idle timeout.
                var limits = HTTP2Limits()
                limits.handshakeTimeout = .nanoseconds(timeouts.header.nanoseconds)
                limits.idleTimeout = .nanoseconds(timeouts.idle.nanoseconds)
                let connection = HTTP2Connection(session: session, eventLoop: context.eventLoop, limits: limits)
                let streams = GatewayHTTP2Streams(gateway: gateway, maxBody: maxBody, eventLoop: context.eventLoop, clientAddress: clientAddress)
                connection.delegate = streams
                streams.connection = connection
                try context.pipeline.syncOperations.addHandler(connection)
            } else {
                buffered = buffer  // not enough bytes to tell yet
                return
            }
        } catch {
            context.close(promise: nil)
            return
        }
        buffered = nil
        // Counted once the protocol is known; a connection closed before it said is not.
        let metrics = gateway.metrics
        let kind: GatewayMetrics.ConnectionProtocol = start == Self.preface ? .http2 : .http1
        metrics.connectionOpened(kind)
        context.channel.closeFuture.whenComplete { _ in metrics.connectionClosed(kind) }
        context.fireChannelActive()
        context.fireChannelRead(wrapInboundOut(buffer))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Serves gateway requests on HTTP/2 streams: collects each request (headers, body up to the
/// limit, end of stream), answers it through `Gateway.handle`, and cancels the work if the client
/// resets the stream. Confined to the connection's event loop, like the connection.
final class GatewayHTTP2Streams: HTTP2ConnectionDelegate {
    let gateway: Gateway
    let maxBody: Int
    let executor: EventLoopTaskExecutor
    let clientAddress: String
    weak var connection: HTTP2Connection?

    private struct Incoming {
        var method = ""
        var path = ""
        var headers: [(name: String, value: String)] = []
        var body: [UInt8] = []
        var tooLarge = false
    }
    private var incoming: [Int32: Incoming] = [:]
    private var running: [Int32: Task<Void, Never>] = [:]

    init(gateway: Gateway, maxBody: Int, eventLoop: any EventLoop, clientAddress: String) {
        self.gateway = gateway
        self.maxBody = maxBody
        self.executor = EventLoopTaskExecutor(eventLoop)
        self.clientAddress = clientAddress
    }

    func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event) {
        switch event {
        case .headers(let streamID, let fields, let endStream):
            if incoming[streamID] == nil && running[streamID] == nil {
                var request = Incoming()
                for field in fields {
                    switch field.name {
                    case ":method": request.method = field.value
                    case ":path": request.path = field.value
                    case ":authority": request.headers.append(("host", field.value))
                    case let name where name.hasPrefix(":"): break
                    default: request.headers.append((field.name, field.value))
                    }
                }
                incoming[streamID] = request
            }
            if endStream { dispatch(streamID) }
        case .data(let streamID, let bytes):
            connection.session.consume(streamID: streamID, count: bytes.readableBytes)
            if var request = incoming[streamID] {
                if request.body.count + bytes.readableBytes > maxBody { request.tooLarge = true; request.body = [] }
                if !request.tooLarge { request.body += bytes.readableBytesView }
                incoming[streamID] = request
            }
        case .endStream(let streamID):
            dispatch(streamID)
        case .streamClosed(let streamID, _):
            incoming[streamID] = nil
            running.removeValue(forKey: streamID)?.cancel()
        default:
            break
        }
    }

    func connectionClosed(_ connection: HTTP2Connection) {
        for task in running.values { task.cancel() }
        running = [:]
        incoming = [:]
    }

    private func dispatch(_ streamID: Int32) {
        guard let pending = incoming.removeValue(forKey: streamID), let connection else { return }
        // HTTP/2 header names are lower case on the wire (nghttp2 refuses others).
        var request = GatewayRequest(method: pending.method, target: pending.path, lowercasedHeaders: pending.headers, body: pending.body)
        request.bodyLimitExceeded = pending.tooLarge
        request.clientAddress = clientAddress
        running[streamID] = Self.answer(request, streamID: streamID, isHead: pending.method == "HEAD", gateway: gateway, executor: executor,
                                        bound: NIOLoopBound(connection, eventLoop: connection.eventLoop))
    }

    private static func answer(_ request: GatewayRequest, streamID: Int32, isHead: Bool, gateway: Gateway, executor: EventLoopTaskExecutor,
                               bound: NIOLoopBound<HTTP2Connection>) -> Task<Void, Never> {
        // Started at once, on this event loop: no queueing before the gateway's own work begins.
        Task.immediate(executorPreference: executor) {
            let response = await gateway.handle(request)
            await write(response, streamID: streamID, isHead: isHead, to: bound)
        }
    }

    /// Writes the answer on the stream (for HEAD, the headers only). Runs on the connection's event
    /// loop (the task executor).
    static func write(_ response: GatewayResponse, streamID: Int32, isHead: Bool, to bound: NIOLoopBound<HTTP2Connection>) async {
        var fields = [HeaderField(":status", String(response.status))]
        fields.reserveCapacity(response.headers.count + 2)
        for (name, value) in response.headers {
            let name = GatewayRequest.lowercased(name)
            switch name {
            case "connection", "keep-alive", "transfer-encoding": continue  // HTTP/1.1 only (RFC 9113 §8.2.2)
            default: fields.append(HeaderField(name, value))
            }
        }
        let connection = bound.value
        switch response.body {
        case .bytes(let bytes):
            if isHead {
                if HTTP1Response.allowsBody(response.status) { fields.append(HeaderField("content-length", String(bytes.count))) }
                try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
            } else if bytes.isEmpty {
                try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
            } else {
                fields.append(HeaderField("content-length", String(bytes.count)))
                try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: false)
                try? connection.session.sendData(streamID: streamID, ByteBuffer(bytes: bytes))
                try? connection.session.finish(streamID: streamID)
            }
            connection.flush()
        case .stream(let chunks):
            if isHead {
                // Dropping the stream unread cancels the upstream call.
                try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
                connection.flush()
                return
            }
            do {
                try connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: false)
                connection.flush()
                for await chunk in chunks {
                    try Task.checkCancellation()
                    try bound.value.session.sendData(streamID: streamID, ByteBuffer(bytes: chunk))
                    bound.value.flush()
                }
                try bound.value.session.finish(streamID: streamID)
                bound.value.flush()
            } catch {
                // The stream is gone (reset or closed): ending the loop cancels the upstream call.
            }
        }
    }
}
