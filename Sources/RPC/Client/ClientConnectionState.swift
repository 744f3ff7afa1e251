import HTTP2
import NIOCore
import Synchronization

/// Whether a client connection still takes new calls, readable from any thread (so picking a
/// connection for a call needs no trip to its event loop).
final class ConnectionStatus: Sendable {
    private let draining = Atomic<Bool>(false)
    var isDraining: Bool { draining.load(ordering: .relaxed) }
    func markDraining() { draining.store(true, ordering: .relaxed) }
}

/// What a client call sees from the server, in order.
/// Header blocks travel as received; they become `Metadata` only if the caller asks for it.
enum ClientCallEvent: Sendable {
    case headers([HeaderField])
    /// A response message, the wire bytes it took (acknowledged once the caller reads it), and
    /// whether its compressed flag was set.
    case message(ByteBuffer, wireBytes: Int, compressed: Bool)
    case end(RPCError, trailers: [HeaderField])
}

/// The gRPC side of one client connection, on its event loop: opens streams for calls and
/// turns the server's frames into call events.
final class ClientConnectionState: HTTP2ConnectionDelegate {
    unowned(unsafe) var connection: HTTP2Connection!
    let maxMessageSize: Int
    var streams: [Int32: Stream] = [:]
    /// Set by GOAWAY or close: no new calls on this connection.
    var draining = false {
        didSet { if draining { status.markDraining() } }
    }
    let status = ConnectionStatus()
    var onClose: (() -> Void)?
    /// Why the connection failed, when known (a TLS alert): added to the calls' UNAVAILABLE.
    var closeReason: String?
    /// The server said GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"): the client pings less on
    /// its next connections.
    var onTooManyPings: (() -> Void)?
    /// Set when the client no longer wants this connection (its address left the resolved set):
    /// it closes once its last call has ended.
    var closeWhenIdle = false

    /// One call's state. A class, so that updating it in place does not go through
    /// Dictionary's modify accessor, whose coroutine frame for a value this large was a heap
    /// allocation on every access (about nine per unary call, counted with a malloc uprobe).
    final class Stream {
        var deframer: MessageDeframer?
        let events: InboundQueue<ClientCallEvent>
        var httpStatus = 0
        var sawHeaders = false
        var ended = false
        var window = ReceiveWindow()
        /// When the caller stops waiting, if the call has a timeout.
        var deadline: NIODeadline?

        init(events: InboundQueue<ClientCallEvent>) {
            self.events = events
        }
    }

    init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    // MARK: Calls

    /// Opens a stream for a call. With `onlyRequest` (a unary or server-streaming call) the
    /// request message and the end of the request stream go out with the headers.
    func startCall(fields: [HeaderField], events: InboundQueue<ClientCallEvent>, onlyRequest: ByteBuffer? = nil,
                   deadline: NIODeadline? = nil) throws -> Int32 {
        // The connection stopped taking calls after the caller picked it (a GOAWAY in between):
        // nothing was sent, so the caller may take another connection.
        if draining {
            // A connection that failed (TLS 1.3: the server refused our certificate just after
            // the handshake) says why; another connection would fail the same way.
            if let closeReason { throw RPCError(.unavailable, "the connection closed: \(closeReason)") }
            throw RPCError(.unavailable, "the connection is shutting down", origin: .unprocessed)
        }
        let streamID: Int32
        do {
            streamID = try connection.session.startRequest(fields)
        } catch {
            // nghttp2 refuses new streams once GOAWAY is in, or when stream ids run out: this
            // connection is done for new calls.
            draining = true
            throw RPCError(.unavailable, "the connection takes no new streams (\(error))", origin: .unprocessed)
        }
        let stream = Stream(events: events)
        stream.deadline = deadline
        streams[streamID] = stream
        if let deadline { armDeadlineTimer(for: deadline) }
        if let onlyRequest {
            try connection.session.sendData(streamID: streamID, onlyRequest)
            try connection.session.finish(streamID: streamID)
        }
        connection.flush()
        return streamID
    }

    /// Queues a request message. After the server has ended the call the message is dropped:
    /// the call's outcome is the status the server sent, which the caller reads from the responses.
    func send(streamID: Int32, _ framed: ByteBuffer) throws {
        guard streams[streamID]?.ended == false else { return }
        try connection.session.sendData(streamID: streamID, framed)
        connection.flush()
    }

    func finishRequests(streamID: Int32) {
        guard streams[streamID]?.ended == false else { return }
        try? connection.session.finish(streamID: streamID)
        connection.flush()
    }

    /// The caller read a response message of `count` wire bytes.
    func consume(streamID: Int32, count: Int) {
        guard let stream = streams[streamID] else { return }
        stream.window.read(count)
        acknowledgeIfReading(streamID: streamID)
        connection.flush()
    }

    func acknowledgeIfReading(streamID: Int32) {
        guard let stream = streams[streamID] else { return }
        connection.session.consume(streamID: streamID, count: stream.window.takeAcknowledgement())
    }

    /// Takes no new calls and closes once the calls in flight have ended.
    func retire() {
        draining = true
        closeWhenIdle = true
        if streams.isEmpty { connection.close() }
    }

    /// Cancels a call: RST_STREAM(CANCEL) to the server, `status` to the caller.
    func cancel(streamID: Int32, status: RPCError) {
        guard let stream = streams[streamID], !stream.ended else { return }
        stream.ended = true
        connection.session.resetStream(streamID, errorCode: 0x8)
        connection.flush()
        stream.events.yield(.end(status, trailers: []))
        stream.events.finish()
    }

    // MARK: Events from the server

    func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event) {
        switch event {
        case .headers(let streamID, let fields, let endStream):
            guard let stream = streams[streamID], !stream.ended else { return }
            if !stream.sawHeaders {
                let head = ResponseHead(fields)
                // 1xx: informational, the real response head follows.
                if (100..<200).contains(head.status) && !endStream { return }
                stream.sawHeaders = true
                stream.httpStatus = head.status
                if endStream {
                    // Trailers-Only: the status is in this one block (or, from a proxy that is
                    // not gRPC, only the HTTP status and content-type say what happened).
                    end(streamID: streamID, fields: fields, head: head)
                    return
                }
                if let failure = head.failure {
                    // Not a gRPC response (a proxy's error page, say): whatever the body holds
                    // is not gRPC messages. The call ends with the mapped status; the stream is
                    // of no further use.
                    end(streamID: streamID, status: failure, trailers: [])
                    connection.session.resetStream(streamID, errorCode: 0x8)
                    return
                }
                do {
                    stream.deframer = MessageDeframer(maxMessageSize: maxMessageSize, compression: try Compression.named(head.encoding))
                } catch {
                    end(streamID: streamID, status: RPCError(.internal, "the server used an unsupported grpc-encoding \(head.encoding ?? "")"), trailers: [])
                    connection.session.resetStream(streamID, errorCode: 0x8)
                    return
                }
                stream.events.yield(.headers(fields))
            } else {
                end(streamID: streamID, fields: fields, head: nil)
            }
        case .data(let streamID, let bytes):
            guard let stream = streams[streamID], !stream.ended, stream.deframer != nil else {
                connection.session.consume(streamID: streamID, count: bytes.readableBytes)
                return
            }
            stream.deframer!.append(bytes)
            stream.window.received(bytes.readableBytes)
            defer { acknowledgeIfReading(streamID: streamID) }
            while !stream.ended {
                do {
                    let before = stream.deframer?.buffer.readableBytes ?? 0
                    guard let message = try stream.deframer?.next() else { break }
                    let wireBytes = before - (stream.deframer?.buffer.readableBytes ?? 0)
                    stream.window.delivered(wireBytes)
                    stream.events.yield(.message(message, wireBytes: wireBytes, compressed: stream.deframer?.lastMessageWasCompressed ?? false))
                } catch let error as RPCError {
                    end(streamID: streamID, status: error, trailers: [])
                    connection.session.resetStream(streamID, errorCode: 0x8)
                    break
                } catch {
                    break
                }
            }
        case .endStream:
            break  // the status comes with trailers; a DATA END_STREAM without them is caught on close
        case .streamClosed(let streamID, let errorCode):
            if let stream = streams[streamID], !stream.ended {
                let status: RPCError
                if errorCode == 0 {
                    status = RPCError(stream.httpStatus == 200 || stream.httpStatus == 0 ? .internal : RPCError.Code.fromHTTPStatus(stream.httpStatus),
                                      "the server closed the stream without a grpc-status")
                } else if errorCode == 0x7 && !stream.sawHeaders {
                    // REFUSED_STREAM, from the server's RST_STREAM or from nghttp2 closing our
                    // streams above a GOAWAY's last stream id: the server did not process the
                    // request, so it can go again on another connection (RFC 9113 §8.7).
                    status = RPCError(.unavailable, "the server refused the stream (not processed)", origin: .unprocessed)
                } else {
                    status = RPCError(RPCError.Code.fromHTTP2ErrorCode(errorCode), "the stream was reset (HTTP/2 error \(errorCode))")
                }
                end(streamID: streamID, status: status, trailers: [])
            }
            if let stream = streams.removeValue(forKey: streamID) {
                // Bytes held back from an unread stream go back to the connection's window.
                connection.session.consume(streamID: streamID, count: stream.window.unacknowledgedAtClose)
            }
            if closeWhenIdle && streams.isEmpty { connection.close() }
        case .goAway(_, let errorCode, let debugData):
            draining = true
            // gRPC's keepalive enforcement (A8): the server found our pings too frequent.
            if errorCode == 0xb && debugData == PingPolicy.tooManyPings { onTooManyPings?() }
        case .headerListTooLarge(let streamID, let size, _):
            // A stream error: this call fails, the connection goes on.
            end(streamID: streamID, status: RPCError(.resourceExhausted, "the server's header list of \(size) bytes is over the limit of \(connection.session.settings.maxHeaderListSize)"), trailers: [])
            connection.session.resetStream(streamID, errorCode: 0x8)
        case .ping, .settings, .resetByPeer, .pingAck, .headerFrame:
            break
        }
    }

    // MARK: Deadlines (one timer per connection, see DeadlineTimer)

    var deadlineTimer = DeadlineTimer()

    func armDeadlineTimer(for deadline: NIODeadline) {
        deadlineTimer.arm(for: deadline, on: connection.eventLoop) { [weak self] in self?.checkDeadlines() }
    }

    /// Cancels every call whose deadline has passed (RST_STREAM, DEADLINE_EXCEEDED to the caller).
    func checkDeadlines() {
        let open = streams.lazy.filter { !$0.value.ended }.compactMap { entry in entry.value.deadline.map { (key: entry.key, deadline: $0) } }
        let passed = deadlineTimer.expired(among: open, on: connection.eventLoop) { [weak self] in self?.checkDeadlines() }
        for streamID in passed { cancel(streamID: streamID, status: RPCError(.deadlineExceeded, "the deadline passed")) }
    }

    func connectionClosed(_ connection: HTTP2Connection) {
        deadlineTimer.cancel()
        draining = true
        for streamID in Array(streams.keys) {
            end(streamID: streamID, status: RPCError(.unavailable, closeReason.map { "the connection closed: \($0)" } ?? "the connection closed"), trailers: [])
        }
        streams = [:]
        onClose?()
        onClose = nil
    }

    /// The status from a trailers block, or from a Trailers-Only response (`head`: its parsed
    /// head). Without a grpc-status, the HTTP status and content-type decide
    /// (doc/http-grpc-status-mapping.md of the gRPC project).
    func end(streamID: Int32, fields: [HeaderField], head: ResponseHead?) {
        var status: RPCError
        if let code = fields.first(where: { $0.name == "grpc-status" }).flatMap({ Int($0.value) }) {
            let message = fields.first { $0.name == "grpc-message" }.map { PercentEncoding.decode($0.value) } ?? ""
            status = RPCError(RPCError.Code(rawValue: code), message)
        } else if let failure = head?.failure {
            status = failure
        } else if let httpStatus = streams[streamID]?.httpStatus, httpStatus != 200 {
            status = RPCError(RPCError.Code.fromHTTPStatus(httpStatus), "HTTP status \(httpStatus) without a grpc-status")
        } else {
            status = RPCError(.internal, "the response ended without a grpc-status")
        }
        if streams[streamID]?.deframer?.hasPartialMessage == true && status.code == .ok {
            status = RPCError(.internal, "the response ended inside a message")
        }
        // A failure carries the trailers as its metadata (the caller sees them on the error);
        // for OK they stay raw until asked for.
        if status.code != .ok {
            status.metadata = Metadata(fields: fields.map { ($0.name, $0.value) })
            if let details = fields.first(where: { $0.name == RPCError.detailsTrailer }) { status.readDetails(trailer: details.value) }
        }
        end(streamID: streamID, status: status, trailers: fields)
    }

    func end(streamID: Int32, status: RPCError, trailers: [HeaderField]) {
        guard let stream = streams[streamID], !stream.ended else { return }
        stream.ended = true
        stream.events.yield(.end(status, trailers: trailers))
        stream.events.finish()
    }
}
