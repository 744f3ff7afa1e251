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
        if draining { throw RPCError(.unavailable, "the connection is shutting down") }
        let streamID = try connection.session.startRequest(fields)
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
                stream.sawHeaders = true
                stream.httpStatus = Int(fields.first { $0.name == ":status" }?.value ?? "") ?? 0
                let encoding = fields.first { $0.name == "grpc-encoding" }?.value
                do {
                    stream.deframer = MessageDeframer(maxMessageSize: maxMessageSize, compression: try Compression.named(encoding))
                } catch {
                    end(streamID: streamID, status: RPCError(.internal, "the server used an unsupported grpc-encoding \(encoding ?? "")"), trailers: [])
                    connection.session.resetStream(streamID, errorCode: 0x8)
                    return
                }
                if endStream {
                    // Trailers-Only: the status is in this one block.
                    end(streamID: streamID, fields: fields)
                } else {
                    stream.events.yield(.headers(fields))
                }
            } else {
                end(streamID: streamID, fields: fields)
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
                let status = errorCode == 0
                    ? RPCError(stream.httpStatus == 200 || stream.httpStatus == 0 ? .internal : RPCError.Code.fromHTTPStatus(stream.httpStatus),
                               "the server closed the stream without a grpc-status")
                    : RPCError(RPCError.Code.fromHTTP2ErrorCode(errorCode), "the stream was reset (HTTP/2 error \(errorCode))")
                end(streamID: streamID, status: status, trailers: [])
            }
            if let stream = streams.removeValue(forKey: streamID) {
                // Bytes held back from an unread stream go back to the connection's window.
                connection.session.consume(streamID: streamID, count: stream.window.unacknowledgedAtClose)
            }
        case .goAway:
            draining = true
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
            end(streamID: streamID, status: RPCError(.unavailable, "the connection closed"), trailers: [])
        }
        streams = [:]
        onClose?()
        onClose = nil
    }

    /// The status from a trailers block (or the HTTP status when grpc-status is missing).
    func end(streamID: Int32, fields: [HeaderField]) {
        let httpStatus = streams[streamID]?.httpStatus ?? 0
        var status: RPCError
        if let code = fields.first(where: { $0.name == "grpc-status" }).flatMap({ Int($0.value) }) {
            let message = fields.first { $0.name == "grpc-message" }.map { PercentEncoding.decode($0.value) } ?? ""
            status = RPCError(RPCError.Code(rawValue: code), message)
        } else if httpStatus != 200 {
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
