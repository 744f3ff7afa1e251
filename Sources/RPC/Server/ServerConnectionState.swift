import HTTP2
import Logging
import NIOCore
import ProtobufKit

/// The gRPC side of one server connection, on its event loop: turns HTTP/2 streams into calls,
/// runs each call's handler in a task, and turns what the handler does back into frames.
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
    lazy var loopBound = NIOLoopBound(self, eventLoop: connection.eventLoop)
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
        var finished = false
        /// When the call's deadline passes (from `grpc-timeout`), if it has one.
        var deadline: NIODeadline?
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
    /// Writers waiting for their stream's queue to drain.
    var writeWaiters: [Int32: [CheckedContinuation<Void, Error>]] = [:]

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
            if let call = calls.removeValue(forKey: streamID) {
                // Bytes held back from a handler that stopped reading go back to the connection's window.
                connection.session.consume(streamID: streamID, count: call.window.unacknowledgedAtClose)
                if !call.finished {
                    // The client went away (RST_STREAM): the handler's task is cancelled.
                    call.requests.finish(throwing: RPCError(.cancelled, "the client cancelled the call (HTTP/2 error \(errorCode))"))
                    call.task?.cancel()
                }
            }
        case .goAway, .ping, .settings, .resetByPeer, .pingAck, .headerFrame, .headerListTooLarge:
            break
        }
    }

    func connectionClosed(_ connection: HTTP2Connection) {
        deadlineTimer.cancel()
        for streamID in Array(writeWaiters.keys) { resumeWriters(streamID: streamID, throwing: RPCError(.unavailable, "the connection closed")) }
        for (_, call) in calls {
            call.requests.finish(throwing: RPCError(.unavailable, "the connection closed"))
            call.task?.cancel()
        }
        calls = [:]
        onClose?()
        onClose = nil
    }

    // MARK: Opening a call

    func open(streamID: Int32, fields: [HeaderField], endStream: Bool) {
        var path = ""
        var method = ""
        var contentType = ""
        var timeout: String?
        var encoding: String?
        var acceptEncoding: String?
        var metadataFields: [(name: String, value: String)] = []
        metadataFields.reserveCapacity(fields.count)
        for field in fields {
            switch field.name {
            case ":path": path = field.value
            case ":method": method = field.value
            case "content-type": contentType = field.value
            case "grpc-timeout": timeout = field.value
            case "grpc-encoding": encoding = field.value
            case "grpc-accept-encoding": acceptEncoding = field.value
            default: metadataFields.append((field.name, field.value))
            }
        }
        // Not gRPC at all: HTTP 415, as PROTOCOL-HTTP2 asks.
        guard contentType == "application/grpc" || contentType.hasPrefix("application/grpc+") || contentType.hasPrefix("application/grpc;") else {
            respondWithoutCall(streamID: streamID, httpStatus: "415", status: RPCError(.internal, "content-type \(contentType.isEmpty ? "(none)" : contentType) is not application/grpc"))
            return
        }
        guard method == "POST" else {
            respondWithoutCall(streamID: streamID, httpStatus: "405", status: RPCError(.internal, ":method \(method) is not POST"))
            return
        }
        guard let handler = router.methods[path] else {
            let service = path.split(separator: "/").first.map(String.init) ?? ""
            let known = router.serviceNames.contains(service)
            respondWithoutCall(streamID: streamID, httpStatus: "200", status: RPCError(.unimplemented, known ? "method \(path) is not implemented" : "service \(service) is not implemented"))
            return
        }
        let requestCompression: Compression?
        do {
            requestCompression = try Compression.named(encoding)
        } catch let error as RPCError {
            var status = error
            status.metadata.add("grpc-accept-encoding", Compression.acceptEncoding)
            respondWithoutCall(streamID: streamID, httpStatus: "200", status: status)
            return
        } catch {
            return
        }
        let deadline: ContinuousClock.Instant?
        if let timeout {
            guard let duration = GRPCTimeout.parse(timeout) else {
                respondWithoutCall(streamID: streamID, httpStatus: "400", status: RPCError(.internal, "grpc-timeout \(timeout) is malformed"))
                return
            }
            deadline = .now + duration
        } else {
            deadline = nil
        }

        let acceptsGzip = acceptEncoding.map(Compression.acceptsGzip) ?? false
        let context = ServerContext(method: handler.descriptor, metadata: Metadata(fields: metadataFields), deadline: deadline, peer: peer,
                                    requestEncoding: requestCompression?.name, acceptsCompressedResponses: acceptsGzip)
        let requests = InboundQueue<ReceivedMessage>()
        let call = ServerCall(streamID: streamID, context: context, requests: requests, connection: loopBound, decodingOptions: decodingOptions)
        let state = Call(deframer: MessageDeframer(maxMessageSize: options.maxMessageSize, compression: requestCompression),
                         requests: requests, acceptsGzip: acceptsGzip)
        calls[streamID] = state
        if let deadline {
            let at = NIODeadline.now() + .nanoseconds(Int64(max(0, (deadline - .now).nanosecondsClamped)))
            state.deadline = at
            armDeadlineTimer(for: at)
        }
        // Weak: a deferred start is kept by the call's own state until the request stream ends.
        let start: () -> Void = { [weak state, logger, executor, interceptors = options.interceptors, run = handler.run] in
            guard let state else { return }
            state.task = Self.startHandler(call: call, run: run, interceptors: interceptors, deadline: deadline,
                                           executor: executor, logger: logger, path: path)
        }
        if handler.requestStreaming {
            start()
        } else {
            state.startWhenRequestsEnd = start
        }
        if endStream { endOfRequests(streamID: streamID) }
    }

    /// Runs a call's handler in its own task, on the connection's event loop. The task starts
    /// immediately, in this event-loop turn: a handler that does not suspend (a unary call whose
    /// request is all there) runs to its response without being queued, as grpc C++'s callback
    /// API runs its reactors inline.
    static func startHandler(call: ServerCall, run: @escaping @Sendable (ServerCall) async throws -> Void,
                             interceptors: [any ServerInterceptor], deadline: ContinuousClock.Instant?,
                             executor: EventLoopTaskExecutor, logger: Logger, path: String) -> Task<Void, Never> {
        Task.immediate(executorPreference: executor) {
            do {
                // The deadline rides along to every call the handler makes onward.
                try await CallDeadline.$current.withValue(deadline) {
                    if interceptors.isEmpty {
                        try await run(call)
                    } else {
                        try await runServerInterceptors(interceptors, call.context) { _ in try await run(call) }
                    }
                }
                call.finish(nil)
            } catch let error as RPCError {
                call.finish(error)
            } catch is CancellationError {
                call.finish(RPCError(.cancelled, "the call was cancelled"))
            } catch {
                logger.debug("handler failed", metadata: ["path": "\(path)", "error": "\(error)"])
                call.finish(RPCError(.unknown, "the handler failed"))
            }
        }
    }

    /// Answers a stream that never becomes a call, with a Trailers-Only response.
    func respondWithoutCall(streamID: Int32, httpStatus: String, status: RPCError) {
        var fields = [HeaderField(":status", httpStatus), HeaderField("content-type", "application/grpc")]
        fields += statusFields(status)
        try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
    }

    // MARK: Requests

    func deliverMessages(streamID: Int32) {
        guard let call = calls[streamID] else { return }
        while !call.finished {
            let before = call.deframer.buffer.readableBytes
            let message: ByteBuffer?
            do {
                message = try call.deframer.next()
            } catch let error as RPCError {
                failCall(streamID: streamID, error)
                return
            } catch {
                return
            }
            guard let message else { return }
            let wireBytes = before - call.deframer.buffer.readableBytes
            call.window.delivered(wireBytes)
            call.requests.yield(ReceivedMessage(bytes: message, wireBytes: wireBytes))
        }
    }

    func endOfRequests(streamID: Int32) {
        guard let call = calls[streamID] else { return }
        if call.deframer.hasPartialMessage {
            failCall(streamID: streamID, RPCError(.internal, "the request stream ended inside a message"))
            return
        }
        call.requests.finish()
        if let start = call.startWhenRequestsEnd, !call.finished {
            call.startWhenRequestsEnd = nil
            start()
        }
    }

    /// Ends a call from the transport side (bad input, deadline): status now, handler cancelled.
    func failCall(streamID: Int32, _ error: RPCError) {
        guard let call = calls[streamID], !call.finished else { return }
        call.requests.finish(throwing: error)
        call.task?.cancel()
        finishCall(streamID: streamID, status: error, initialMetadata: { Metadata() })
    }

    // MARK: Deadlines (one timer per connection, see DeadlineTimer)

    var deadlineTimer = DeadlineTimer()

    func armDeadlineTimer(for deadline: NIODeadline) {
        let bound = loopBound
        deadlineTimer.arm(for: deadline, on: connection.eventLoop) { bound.value.checkDeadlines() }
    }

    /// Ends every call whose deadline has passed, then waits for the next deadline.
    func checkDeadlines() {
        let bound = loopBound
        let open = calls.lazy.filter { !$0.value.finished }.compactMap { entry in entry.value.deadline.map { (key: entry.key, deadline: $0) } }
        let passed = deadlineTimer.expired(among: open, on: connection.eventLoop) { bound.value.checkDeadlines() }
        for streamID in passed { failCall(streamID: streamID, RPCError(.deadlineExceeded, "the deadline passed")) }
        connection.flush()
    }

    /// The handler read a message of `count` wire bytes.
    func consume(streamID: Int32, count: Int) {
        guard let call = calls[streamID] else { return }
        call.window.read(count)
        acknowledgeIfReading(streamID: streamID)
        connection.flush()
    }

    func acknowledgeIfReading(streamID: Int32) {
        guard let call = calls[streamID] else { return }
        connection.session.consume(streamID: streamID, count: call.window.takeAcknowledgement())
    }

    // MARK: Responses

    func sendMessage<Message: ProtobufKit.Message>(streamID: Int32, _ message: Message, context: ServerContext, compressed: Bool? = nil) throws {
        guard let call = calls[streamID], !call.finished else {
            throw RPCError(.cancelled, "the call has ended")
        }
        let compression = call.acceptsGzip ? messageCompression(call, context: context, compressed: compressed) : nil
        let framed = try frameMessage(message, compression: compression, maxSize: options.maxMessageSize,
                                      allocator: allocator, direction: "response")
        if !call.headersSent { sendHeaders(call, streamID: streamID, initialMetadata: context.initialMetadata) }
        try connection.session.sendData(streamID: streamID, framed)
        connection.flush()
    }

    /// gzip for one response message when the handler asks for it (per message, else per call)
    /// and the response headers named gzip; they do if, when the first message goes, the call
    /// or that message asked for compression (gRPC's doc/compression.md).
    func messageCompression(_ call: Call, context: ServerContext, compressed: Bool?) -> Compression? {
        let callWantsCompression = context.compressResponses
        if !call.headersSent { call.responseCompression = (compressed ?? callWantsCompression) || callWantsCompression ? .gzip : nil }
        return compressed ?? callWantsCompression ? call.responseCompression : nil
    }

    /// Whether a writer must wait before queuing more on this stream.
    func mustWaitToWrite(streamID: Int32) -> Bool {
        connection.session.pendingOutboundBytes(streamID: streamID) > Self.unsentLimit
    }

    /// Suspends a writer until its stream's queue drains (or the call ends).
    func waitToWrite(streamID: Int32) async throws {
        try await withCheckedThrowingContinuation { continuation in
            writeWaiters[streamID, default: []].append(continuation)
        }
    }

    func connectionDidWrite(_ connection: HTTP2Connection) {
        for streamID in Array(writeWaiters.keys) where !mustWaitToWrite(streamID: streamID) || calls[streamID]?.finished != false {
            resumeWriters(streamID: streamID, throwing: nil)
        }
    }

    func resumeWriters(streamID: Int32, throwing error: Error?) {
        guard let waiters = writeWaiters.removeValue(forKey: streamID) else { return }
        for waiter in waiters {
            if let error { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }

    func sendHeaders(_ call: Call, streamID: Int32, initialMetadata: Metadata) {
        var fields = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc"),
                      HeaderField("grpc-accept-encoding", Compression.acceptEncoding)]
        if let compression = call.responseCompression { fields.append(HeaderField("grpc-encoding", compression.name)) }
        initialMetadata.appendHeaderFields(to: &fields)
        try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: false)
        call.headersSent = true
    }

    func finishCall(streamID: Int32, status: RPCError, context: ServerContext) {
        finishCall(streamID: streamID, status: status, initialMetadata: { context.initialMetadata })
    }

    func finishCall(streamID: Int32, status: RPCError, initialMetadata: () -> Metadata) {
        guard let call = calls[streamID], !call.finished else { return }
        call.finished = true
        if call.headersSent {
            try? connection.session.finish(streamID: streamID, trailers: statusFields(status))
        } else {
            // Trailers-Only: one header block with the status.
            var fields = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")]
            initialMetadata().appendHeaderFields(to: &fields)
            fields += statusFields(status)
            try? connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
        }
        connection.flush()
    }

    func statusFields(_ status: RPCError) -> [HeaderField] {
        var fields = [HeaderField("grpc-status", String(status.code.rawValue))]
        if !status.message.isEmpty { fields.append(HeaderField("grpc-message", PercentEncoding.encode(status.message))) }
        if let details = status.statusDetailsTrailer { fields.append(HeaderField(RPCError.detailsTrailer, Base64.encode(details))) }
        status.metadata.appendHeaderFields(to: &fields)
        return fields
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        if seconds > Int64.max / 1_000_000_000 { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
