import NIOCore

/// Receives a connection's HTTP/2 events, on the connection's event loop.
public protocol HTTP2ConnectionDelegate: AnyObject {
    /// Something happened on the connection. Act on it through `connection`; output is flushed
    /// after every batch of events.
    func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event)
    /// The connection is gone (the socket closed, or a protocol error ended it).
    func connectionClosed(_ connection: HTTP2Connection)
    /// Frames were written: queued body bytes may have drained (for write backpressure).
    func connectionDidWrite(_ connection: HTTP2Connection)
    /// The peer reset `streamID` (server side, asked before the stream's close is delivered):
    /// whether that threw away work the peer had asked for and not waited for. Such resets draw
    /// on the connection's reset budget (`HTTP2Limits.wastedResetBurst`); others are free.
    func connection(_ connection: HTTP2Connection, resetWastesWork streamID: Int32) -> Bool
}

extension HTTP2ConnectionDelegate {
    public func connectionDidWrite(_ connection: HTTP2Connection) {}
    public func connection(_ connection: HTTP2Connection, resetWastesWork streamID: Int32) -> Bool { true }
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
    let limits: HTTP2Limits
    var abuseGuard: AbuseGuard
    var pingPolicy: PingPolicy
    /// Max connection age: the GOAWAY timers (server side).
    var ageTimer: Scheduled<Void>?
    var ageGraceTimer: Scheduled<Void>?
    /// Set once the max-age shutdown notice went out, until the final GOAWAY follows it.
    var awaitingFinalGoAway = false
    /// Whether the peer has completed the preface and its first SETTINGS.
    var handshakeDone = false
    var handshakeTimer: Scheduled<Void>?
    var idleTimer: Scheduled<Void>?
    var keepaliveTimer: Scheduled<Void>?
    var keepaliveDeadline: Scheduled<Void>?
    /// Streams the peer has opened and not closed (server: for the concurrency limit).
    var openStreams: Set<Int32> = []
    var frameScanner: FrameScanner
    /// Set for a connection the server will not serve (over the connection limit).
    var refusal: String?
    /// Strongly held: the delegate is the connection's application state and dies with it.
    public var delegate: HTTP2ConnectionDelegate?
    private var context: ChannelHandlerContext?
    private var closed = false
    /// Set once this end has decided to close (abuse, timeouts): nothing more is processed.
    private var closing = false

    public init(session: HTTP2Session, eventLoop: EventLoop, limits: HTTP2Limits = HTTP2Limits()) {
        self.session = session
        self.eventLoop = eventLoop
        self.limits = limits
        self.abuseGuard = AbuseGuard(limits: limits)
        self.pingPolicy = PingPolicy(limits: limits)
        // A server removes the peer's second SETTINGS ACK: the one for its own stream-limit frame.
        self.frameScanner = FrameScanner(isServer: session.role == .server, ackToRemove: session.role == .server ? 2 : 0)
    }

    /// Answers this connection, once active, with GOAWAY(ENHANCE_YOUR_CALM) and closes it.
    public func refuse(reason: String) {
        refusal = reason
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
        if let refusal {
            session.sendGoAway(errorCode: 0xb, debugData: refusal)
            flushNow()
            context.close(promise: nil)
            return
        }
        flushNow()  // nghttp2's SETTINGS (and the client preface), before our own SETTINGS frame
        if session.role == .server {
            // SETTINGS_MAX_CONCURRENT_STREAMS, advertised by us, enforced in `observe`.
            var frame = context.channel.allocator.buffer(capacity: 15)
            frame.writeBytes([0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3])
            frame.writeInteger(session.settings.maxConcurrentStreams)
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        }
        startTimers()
        context.fireChannelActive()
    }

    // MARK: Timers: handshake, idle, keepalive, connection age

    func startTimers() {
        handshakeTimer = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(limits.handshakeTimeout.nanoseconds)) { [self] in
            if !handshakeDone { close() }  // too slow to say hello (slowloris)
        }
        resetIdleTimer()
        scheduleKeepalive()
        scheduleMaxAge()
    }

    /// When the peer last sent anything. The keepalive timer compares against it when it fires,
    /// instead of being rescheduled on every read (which cost two timer operations per read on
    /// a busy connection).
    var lastActivity = NIODeadline.now()
    /// When a stream last opened or closed: the idle timeout counts from it (calls, not PINGs).
    var lastStreamActivity = NIODeadline.now()

    /// Whether a call is open (a stream).
    var hasOpenStreams: Bool { session.activeStreamCount > 0 }

    func resetIdleTimer() {
        idleTimer?.cancel()
        scheduleIdleCheck(at: lastStreamActivity + .nanoseconds(limits.idleTimeout.nanoseconds))
    }

    private func scheduleIdleCheck(at deadline: NIODeadline) {
        idleTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            let idleSince = lastStreamActivity
            let timeout = TimeAmount.nanoseconds(limits.idleTimeout.nanoseconds)
            // Busy, or a call came and went since this check was scheduled: look again later.
            guard !hasOpenStreams else { return scheduleIdleCheck(at: .now() + timeout) }
            guard NIODeadline.now() >= idleSince + timeout else { return scheduleIdleCheck(at: idleSince + timeout) }
            session.sendGoAway(errorCode: 0, debugData: "idle")
            flushNow()
            closeAfterLinger()
        }
    }

    func scheduleKeepalive() {
        guard let interval = limits.keepaliveInterval else { return }
        keepaliveTimer?.cancel()
        scheduleKeepaliveCheck(at: lastActivity + .nanoseconds(interval.nanoseconds), interval: .nanoseconds(interval.nanoseconds))
    }

    private func scheduleKeepaliveCheck(at deadline: NIODeadline, interval: TimeAmount) {
        keepaliveTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            // Traffic since this check was scheduled shows the peer is alive: check again later.
            let due = lastActivity + interval
            guard NIODeadline.now() >= due else { return scheduleKeepaliveCheck(at: due, interval: interval) }
            // No call to keep alive (and pings without calls would be strikes at a gRPC server),
            // or one PING outstanding already (its own deadline is running).
            guard hasOpenStreams || limits.keepaliveWithoutCalls, keepaliveDeadline == nil else {
                return scheduleKeepaliveCheck(at: .now() + interval, interval: interval)
            }
            session.sendPing()
            flush()
            keepaliveDeadline = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(limits.keepaliveTimeout.nanoseconds)) { [self] in
                close()  // the peer did not answer: the connection is dead
            }
            scheduleKeepaliveCheck(at: .now() + interval, interval: interval)
        }
    }

    /// Server: after the max connection age (with jitter), GOAWAY in two steps; after the grace,
    /// close whatever is still open.
    func scheduleMaxAge() {
        guard session.role == .server, let age = limits.maxConnectionAge else { return }
        let jittered = Double(age.nanoseconds) * Double.random(in: 0.9...1.1)
        ageTimer = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(jittered))) { [self] in
            // Step one: a notice that admits streams already on their way, and a PING whose ACK
            // shows the client has seen it; step two (on that ACK, or after a second at most):
            // the final GOAWAY naming the last stream served.
            session.sendShutdownNotice()
            session.sendPing()
            awaitingFinalGoAway = true
            flush()
            ageTimer = eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in sendFinalAgeGoAway() }
        }
    }

    func sendFinalAgeGoAway() {
        guard awaitingFinalGoAway else { return }
        awaitingFinalGoAway = false
        ageTimer?.cancel()
        session.sendGoAway(errorCode: 0, debugData: "max_age")
        flush()
        if let grace = limits.maxConnectionAgeGrace {
            ageGraceTimer = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(grace.nanoseconds)) { [self] in close() }
        }
    }

    func cancelTimers() {
        for timer in [handshakeTimer, idleTimer, keepaliveTimer, keepaliveDeadline, ageTimer, ageGraceTimer] { timer?.cancel() }
    }

    /// Streams refused for being over the concurrency limit (their later events are dropped).
    var refusedStreams: Set<Int32> = []

    /// Tracks what the timers and the abuse guard need, and refuses streams over the limit.
    /// Returns false if the event must not reach the delegate (and, with `close`, the connection ends).
    func observe(_ event: HTTP2Session.Event) -> Bool {
        var verdict = AbuseGuard.Verdict.fine
        switch event {
        case .settings: handshakeDone = true
        case .headers(let streamID, _, _):
            if refusedStreams.contains(streamID) { return false }
            if session.role == .server && !openStreams.contains(streamID)
                && openStreams.count >= Int(session.settings.maxConcurrentStreams) {
                session.resetStream(streamID, errorCode: 0x7)  // REFUSED_STREAM: safe to retry
                refusedStreams.insert(streamID)
                return false
            }
            if openStreams.insert(streamID).inserted { lastStreamActivity = .now() }
        case .headerListTooLarge(let streamID, _, _):
            if refusedStreams.contains(streamID) { return false }
        case .data(let streamID, let bytes) where refusedStreams.contains(streamID):
            session.consume(streamID: streamID, count: bytes.readableBytes)
            return false
        case .endStream(let streamID) where refusedStreams.contains(streamID):
            return false
        case .streamClosed(let streamID, _):
            if openStreams.remove(streamID) != nil { lastStreamActivity = .now() }
            if refusedStreams.remove(streamID) != nil { return false }
        case .pingAck:
            keepaliveDeadline?.cancel()
            keepaliveDeadline = nil
            if awaitingFinalGoAway { sendFinalAgeGoAway() }
        case .ping where session.role == .server:
            verdict = pingPolicy.pingReceived(now: .now, hasCalls: hasOpenStreams, sentStreamFrames: session.takeStreamFramesSent())
        case .resetByPeer(let streamID) where session.role == .server:
            if openStreams.contains(streamID), delegate?.connection(self, resetWastesWork: streamID) ?? true {
                verdict = abuseGuard.recordWastedReset(now: .now)
            }
        default: break
        }
        if verdict == .fine { verdict = abuseGuard.record(event, now: .now) }
        if case .enhanceYourCalm(let reason) = verdict {
            session.sendGoAway(errorCode: 0xb, debugData: reason)  // ENHANCE_YOUR_CALM
            flushNow()
            closeAfterLinger()
            return false
        }
        return true
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        let bytes = unwrapInboundIn(data)
        // Header-block abuse is judged on the raw frames, before nghttp2 spends work on them.
        let (frameEvents, filtered) = frameScanner.process(bytes)
        for event in frameEvents {
            _ = observe(event)
            if closing { return }
        }
        let events: [HTTP2Session.Event]
        do {
            events = try session.receive(filtered)
        } catch {
            // nghttp2 has queued a GOAWAY describing the problem: send it, then close.
            flushNow()
            context.close(promise: nil)
            return
        }
        // Any traffic shows the peer is alive: it pushes the next keepalive PING back (the timer
        // reads this when it fires). The idle timeout counts streams instead.
        lastActivity = .now()
        deliver(events)
        session.recycle(consume events)
        flush()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        closed = true
        cancelTimers()
        delegate?.connectionClosed(self)
        delegate = nil
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func deliver(_ events: [HTTP2Session.Event]) {
        for event in events {
            guard observe(event) else {
                if closing { return }
                continue
            }
            delegate?.connection(self, received: event)
        }
    }

    /// A flush is scheduled for the end of this event-loop tick.
    private var flushScheduled = false
    /// See `flushNow`.
    private var outputBuffer: ByteBuffer?
    private static let maxKeptOutputCapacity = 64 * 1024

    /// Writes whatever nghttp2 wants to send. Call after acting on the session. Flushes asked
    /// for during one event-loop tick (many calls answering at once) become one socket write.
    public func flush() {
        guard !flushScheduled, !closed else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            flushNow()
        }
    }

    /// Writes now (used where ordering with a close matters).
    func flushNow() {
        guard let context, !closed else { return }
        if session.wantsWrite {
            // The buffer of the previous flush, reused once the socket has let go of it (`clear`
            // allocates anew only while a pending write still holds it): one allocation fewer per
            // flush, and under glibc's malloc a 2 KiB request is a large chunk that makes it
            // consolidate its free lists first.
            var output = outputBuffer ?? context.channel.allocator.buffer(capacity: 2048)
            outputBuffer = nil
            output.clear()
            do {
                try session.drainOutput(into: &output)
            } catch {
                context.close(promise: nil)
                return
            }
            if output.readableBytes > 0 {
                // The one socket write of the tick.
                context.writeAndFlush(wrapOutboundOut(output), promise: nil)
                delegate?.connectionDidWrite(self)
            }
            // Kept for the next flush unless a burst grew it large.
            if output.capacity <= Self.maxKeptOutputCapacity { outputBuffer = output }
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

    /// Ignores further input and closes shortly. Closing at once, or with unread input left in
    /// the socket, makes the kernel reset the connection, which can destroy the GOAWAY before
    /// the peer reads it; so input keeps being read (and dropped) until the close.
    func closeAfterLinger() {
        closing = true
        _ = eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) { [self] in close() }
    }

    /// Closes the connection now.
    public func close() {
        closing = true
        context?.close(promise: nil)
    }
}

extension Duration {
    /// Whole nanoseconds, saturating (for NIO's TimeAmount).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        if seconds > Int64.max / 1_000_000_000 { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
