import HTTP2
import Logging
import NIOCore
import ProtobufKit

/// The gRPC side of one server connection, on its event loop: turns HTTP/2 streams into calls,
/// runs each call's handler in a task, and turns what the handler does back into frames.
///
/// Split by responsibility: this file dispatches the connection's events and ends calls when
/// streams or the connection close; `+Opening` validates request headers and routes a stream to
/// its handler; `+Deadlines` ends calls whose deadline passed; `+FlowControl` delivers request
/// messages, acknowledges what handlers read and pauses writers behind the peer's window;
/// `+Responses` sends headers, messages and trailers.
final class ServerConnectionState: HTTP2ConnectionDelegate {
    let router: Router
    let options: RPCServer.Options
    let logger: Logger
    let peer: String
    unowned(unsafe) var connection: HTTP2Connection!
    var calls: [Int32: Call] = [:]
    /// Called once the connection has closed (the server forgets it).
    var onClose: (() -> Void)?
    /// Handlers of this connection run on its event loop.
    lazy var executor = EventLoopTaskExecutor(connection.eventLoop)
    /// This state as seen from a handler's task (which runs on the loop, but is a Sendable context).
    /// Made for each use, never stored here: a stored one held this state strongly from inside
    /// itself, so no connection's state (its router, with every service object its handlers
    /// capture, and their open database files) was ever freed once it had served a call.
    var loopBound: NIOLoopBound<ServerConnectionState> { NIOLoopBound(self, eventLoop: connection.eventLoop) }
    let decodingOptions: BinaryDecodingOptions
    let allocator = ByteBufferAllocator()

    /// One call's transport state. A class: it is updated in place on every frame, and a
    /// struct in the dictionary would be copied out and back each time.
    final class Call {
        var deframer: MessageDeframer
        let requests: InboundQueue<ReceivedMessage>
        var task: Task<Void, Never>?
        /// Set for a method taking one request: the handler starts when the request stream ends.
        var startWhenRequestsEnd: (() -> Void)?
        /// Whether the client listed gzip in grpc-accept-encoding.
        let acceptsGzip: Bool
        /// gzip once the response headers have named it; only then may a message be compressed.
        var responseCompression: Compression?
        var headersSent = false
        /// The status has been sent (or the stream reset): nothing more goes out.
        var finished = false
        /// When the call's deadline passes (from `grpc-timeout`), if it has one, and how long
        /// the client gave it.
        var deadline: NIODeadline?
        var timeout: TimeAmount?
        var window = ReceiveWindow()

        init(deframer: MessageDeframer, requests: InboundQueue<ReceivedMessage>, acceptsGzip: Bool) {
            self.deframer = deframer
            self.requests = requests
            self.acceptsGzip = acceptsGzip
        }
    }

    /// Response bytes a call may queue beyond what flow control lets out before its writes wait:
    /// a handler writing faster than its client reads is paused, and memory stays bounded.
    static let unsentLimit = 64 * 1024
    /// Writers waiting for their stream's queue to drain, each with an id so that a cancelled
    /// writer can take itself out.
    var writeWaiters: [Int32: [(id: Int, continuation: CheckedContinuation<Void, Error>)]] = [:]
    var nextWaiterID = 0
    /// One timer for the earliest deadline of this connection's calls.
    var deadlineTimer = DeadlineTimer()
    /// Handlers started and not yet returned, reset streams' included: at most the stream limit,
    /// so that resetting streams never buys a client more work than it was granted.
    var runningHandlers = 0
    /// Calls whose handler waits for one of those to return, in arrival order.
    var waitingToStart: [(streamID: Int32, start: () -> Void)] = []
    /// Set when the connection has closed: `connection` may be gone, handlers that return later
    /// find nothing to do.
    var isClosed = false

    init(router: Router, options: RPCServer.Options, logger: Logger, peer: String) {
        self.router = router
        self.options = options
        self.logger = logger
        self.peer = peer
        self.decodingOptions = .defaults { $0.maxSize = options.maxMessageSize }
    }

    // MARK: Events from the peer

    func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event) {
        switch event {
        case .headers(let streamID, let fields, let endStream):
            if calls[streamID] == nil {
                open(streamID: streamID, fields: fields, endStream: endStream)
            } else if endStream {
                endOfRequests(streamID: streamID)  // trailers from a client: the request side is done
            }
        case .headerListTooLarge(let streamID, let size, _):
            // A stream error: this call fails, the connection and its other calls go on.
            let error = RPCError(.resourceExhausted, "the header list of \(size) bytes is over the limit of \(connection.session.settings.maxHeaderListSize)")
            if calls[streamID] != nil {
                failCall(streamID: streamID, error)
            } else {
                respondWithoutCall(streamID: streamID, httpStatus: "200", status: error)
            }
        case .data(let streamID, let bytes):
            guard let call = calls[streamID] else {
                connection.session.consume(streamID: streamID, count: bytes.readableBytes)
                return
            }
            call.deframer.append(bytes)
            call.window.received(bytes.readableBytes)
            deliverMessages(streamID: streamID)
            acknowledgeIfReading(streamID: streamID)
        case .endStream(let streamID):
            endOfRequests(streamID: streamID)
        case .streamClosed(let streamID, let errorCode):
            if writeWaiters[streamID] != nil { resumeWriters(streamID: streamID, throwing: RPCError(.cancelled, "the stream closed")) }
            if !waitingToStart.isEmpty { waitingToStart.removeAll { $0.streamID == streamID } }
            if let call = calls.removeValue(forKey: streamID) {
                if !call.finished {
                    // The client went away (RST_STREAM): the handler's task is cancelled.
                    call.requests.finish(throwing: RPCError(.cancelled, "the client cancelled the call (HTTP/2 error \(errorCode))"))
                    call.task?.cancel()
                }
            }
        case .goAway, .ping, .settings, .resetByPeer, .pingAck, .headerFrame:
            break
        }
    }

    /// A reset wastes work when the call was neither answered nor due: the client asked for
    /// work and withdrew before any answer. A reset in the second half of the call's time is
    /// the client's deadline expiring, which this server enforces anyway, so it is free; and
    /// so is cancelling a call that has had its headers (a stream the client stops reading).
    func connection(_ connection: HTTP2Connection, resetWastesWork streamID: Int32) -> Bool {
        guard let call = calls[streamID], !call.finished, !call.headersSent else { return false }
        guard let deadline = call.deadline, let timeout = call.timeout else { return true }
        // The client's clock started before the request left, the server's when it arrived: on
        // a loaded machine or a slow path the client's deadline passes well before ours. Half
        // the timeout allows for that; the attack (a reset right after the request) is still
        // counted, and a short timeout gains it nothing, the handler keeping its stream slot
        // until it returns (see `HTTP2Limits.wastedResetBurst`).
        let tolerance = max(TimeAmount.milliseconds(20), .nanoseconds(timeout.nanoseconds / 2))
        return NIODeadline.now() + tolerance < deadline
    }

    func connectionClosed(_ connection: HTTP2Connection) {
        isClosed = true
        deadlineTimer.cancel()
        for streamID in Array(writeWaiters.keys) { resumeWriters(streamID: streamID, throwing: RPCError(.unavailable, "the connection closed")) }
        for (_, call) in calls {
            call.requests.finish(throwing: RPCError(.unavailable, "the connection closed"))
            call.task?.cancel()
        }
        calls = [:]
        waitingToStart = []
        onClose?()
        onClose = nil
    }

    /// A send failed that should not have (the stream was open as far as this state knew): the
    /// call cannot be answered any more, so its stream is reset and the handler cancelled.
    func sendFailed(streamID: Int32, _ error: Error, sending what: String) {
        logger.debug("could not send \(what)", metadata: ["stream": "\(streamID)", "error": "\(error)"])
        connection.session.resetStream(streamID, errorCode: 0x2)  // INTERNAL_ERROR
        if let call = calls[streamID], !call.finished {
            call.finished = true
            call.requests.finish(throwing: RPCError(.internal, "could not send \(what)"))
            call.task?.cancel()
        }
        connection.flush()
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        if seconds > Int64.max / 1_000_000_000 { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
