import NIOCore

/// Receives a connection's HTTP/2 events, on the connection's event loop.
public protocol HTTP2ConnectionDelegate: AnyObject {
    /// Something happened on the connection. Act on it through `connection`; output is flushed
    /// after every batch of events.
    func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event)
    /// The connection is gone (the socket closed, or a protocol error ended it).
    func connectionClosed(_ connection: HTTP2Connection)
}

/// The SwiftNIO channel handler that drives an `HTTP2Session`: socket bytes in, frames out.
///
/// Confined to its channel's event loop. Code on other threads reaches it through
/// `eventLoop.execute` (see `NIOLoopBound`), acts on `session`, then calls `flush()`.
public final class HTTP2Connection: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public let session: HTTP2Session
    public let eventLoop: EventLoop
    /// Strongly held: the delegate is the connection's application state and dies with it.
    public var delegate: HTTP2ConnectionDelegate?
    private var context: ChannelHandlerContext?
    private var closed = false

    public init(session: HTTP2Session, eventLoop: EventLoop) {
        self.session = session
        self.eventLoop = eventLoop
    }

    /// The channel this handler serves, once added.
    public var channel: Channel? { context?.channel }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { flush() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        flush()  // our SETTINGS (and the client preface)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        let events: [HTTP2Session.Event]
        do {
            events = try session.receive(bytes)
        } catch {
            // nghttp2 has queued a GOAWAY describing the problem: send it, then close.
            flush()
            context.close(promise: nil)
            return
        }
        deliver(events)
        flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closed = true
        delegate?.connectionClosed(self)
        delegate = nil
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func deliver(_ events: [HTTP2Session.Event]) {
        guard let delegate else { return }
        for event in events { delegate.connection(self, received: event) }
    }

    /// Writes whatever nghttp2 wants to send. Call after acting on the session.
    public func flush() {
        guard let context, !closed else { return }
        var output = context.channel.allocator.buffer(capacity: 0)
        do {
            try session.drainOutput(into: &output)
        } catch {
            context.close(promise: nil)
            return
        }
        if output.readableBytes > 0 {
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        }
        let late = session.pendingEventsFromSend
        if !late.isEmpty {
            session.pendingEventsFromSend = []
            deliver(late)
        }
        // nghttp2 has nothing more to read or write (GOAWAY exchanged, streams done): close.
        if !session.wantsRead && !session.wantsWrite {
            context.close(promise: nil)
        }
    }

    /// Closes the connection now.
    public func close() {
        context?.close(promise: nil)
    }
}
