import HTTP2
import NIOCore
import ProtobufKit
import Synchronization

/// The untyped plumbing of one client call. Sendable: effects hop to the connection's loop.
final class ClientCall: Sendable {
    let streamID: Int32
    let state: NIOLoopBound<ClientConnectionState>
    let events: InboundQueue<ClientCallEvent>
    let compression: Compression?
    let maxMessageSize: Int
    /// Whether each request message is checked against its field rules before it is sent.
    let validatesRequests: Bool
    /// The server's header blocks as received (converted to `Metadata` when asked for).
    let headerBlocks = Mutex<(initial: [HeaderField], trailing: [HeaderField])>(([], []))
    let ended = Mutex(false)
    /// Whether the response message read last had its compressed flag set.
    let lastMessageCompressed = Atomic<Bool>(false)
    /// The call's messages, when its client records calls (`RPCClient.Options.recorder`).
    let recording: CallRecording?

    init(streamID: Int32, state: NIOLoopBound<ClientConnectionState>, events: InboundQueue<ClientCallEvent>,
         compression: Compression?, maxMessageSize: Int, validatesRequests: Bool = true, recording: CallRecording? = nil) {
        self.validatesRequests = validatesRequests
        self.recording = recording
        self.streamID = streamID
        self.state = state
        self.events = events
        self.compression = compression
        self.maxMessageSize = maxMessageSize
    }

    var eventLoop: EventLoop { state.eventLoop }

    /// Frames one request message of a streaming call (checking its field rules and size first:
    /// a failure is a local error, nothing is sent).
    func frame<Message: ProtobufKit.Message>(_ message: Message) throws -> ByteBuffer {
        do {
            if validatesRequests { try RPCError.checkFieldRules(message) }
            let framed = try frameMessage(message, compression: compression, maxSize: maxMessageSize, allocator: ByteBufferAllocator(), direction: "request")
            recording?.addRequest(message)
            return framed
        } catch let error as RPCError {
            throw error.markedLocal()
        }
    }

    /// Queues one framed request message on the connection's loop. Sends queued from one
    /// thread, or under one lock, go out in that order (`CurrentCall` relies on it).
    func submitSend(_ framed: ByteBuffer) -> EventLoopFuture<Void> {
        let state = self.state
        let streamID = self.streamID
        return eventLoop.submit { try state.value.send(streamID: streamID, framed) }
    }

    func finishRequests() {
        let state = self.state
        let streamID = self.streamID
        eventLoop.execute { state.value.finishRequests(streamID: streamID) }
    }

    /// Cancels the call: RST_STREAM(CANCEL), and the caller sees CANCELLED.
    func cancel() {
        let state = self.state
        let streamID = self.streamID
        eventLoop.execute { state.value.cancel(streamID: streamID, status: RPCError(.cancelled, "the call was cancelled")) }
    }

    /// The caller read a message of `count` wire bytes: let the server send more.
    func consumed(_ count: Int) {
        let state = self.state
        let streamID = self.streamID
        if eventLoop.inEventLoop {
            state.value.consume(streamID: streamID, count: count)
        } else {
            eventLoop.execute { state.value.consume(streamID: streamID, count: count) }
        }
    }

    /// Called when the caller is done with a streaming call: a server still sending is told to stop.
    func cancelIfOpen() {
        if !ended.withLock({ $0 }) { cancel() }
    }

    /// Records an event's metadata; returns the status for an `.end`.
    func observe(_ event: ClientCallEvent) {
        switch event {
        case .headers(let initial):
            headerBlocks.withLock { $0.initial = initial }
        case .end(_, let trailers):
            headerBlocks.withLock { $0.trailing = trailers }
            ended.withLock { $0 = true }
        case .message:
            break
        }
    }

    func decode<Message: ProtobufKit.Message>(_ type: Message.Type, _ bytes: ByteBuffer) throws -> Message {
        do {
            return try bytes.withUnsafeReadableBytes { try Message(decoding: $0, options: .defaults { $0.maxSize = maxMessageSize }) }
        } catch let error as ProtobufDecodingError {
            cancel()
            throw RPCError(.internal, "could not decode \(Message.protoMessageName): \(error)")
        }
    }

    /// Reads a unary response: exactly one message, then an OK status.
    func collectOne<Message: ProtobufKit.Message>(_ type: Message.Type) async throws -> UnaryResponse<Message> {
        let response = try decode(Message.self, try await collectOneBuffer())
        return UnaryResponse(message: response, initialMetadata: initialMetadata, trailingMetadata: trailingMetadata,
                             messageWasCompressed: lastMessageCompressed.load(ordering: .relaxed))
    }

    /// Reads a unary response and decodes it with `decode`, in place.
    func collectOne<Response>(_ decode: (UnsafeRawBufferPointer) throws -> Response) async throws -> Response {
        let buffer = try await collectOneBuffer()
        return try buffer.withUnsafeReadableBytes { try decode($0) }
    }

    /// Reads a unary response's message only (its metadata is never converted).
    func collectOneMessage<Message: ProtobufKit.Message>(_ type: Message.Type) async throws -> Message {
        try decode(Message.self, try await collectOneBuffer())
    }

    /// The server's initial and trailing metadata, once received.
    var initialMetadata: Metadata { Self.metadata(headerBlocks.withLock { $0.initial }) }
    var trailingMetadata: Metadata { Self.metadata(headerBlocks.withLock { $0.trailing }) }

    static func metadata(_ fields: [HeaderField]) -> Metadata { Metadata(fields: fields.map { ($0.name, $0.value) }) }

    private func collectOneBuffer() async throws -> ByteBuffer {
        var response: ByteBuffer?
        while let event = try await events.next() {
            observe(event)
            switch event {
            case .headers:
                continue
            case .message(let bytes, let wireBytes, let compressed):
                consumed(wireBytes)
                lastMessageCompressed.store(compressed, ordering: .relaxed)
                guard response == nil else {
                    cancel()
                    throw RPCError(.internal, "the server sent more than one response to a unary call")
                }
                recording?.addResponse(bytes)
                response = bytes
            case .end(let status, _):
                guard status.code == .ok else { throw status }
                guard let response else { throw RPCError(.internal, "the server sent no response message") }
                return response
            }
        }
        throw RPCError(.internal, "the call ended without a status")
    }
}

/// Response messages of a streaming call, decoded as they are read. The sequence ends after an
/// OK status and throws the `RPCError` of any other status.
public struct ResponseStream<Message: ProtobufKit.Message>: AsyncSequence, Sendable {
    public typealias Element = Message
    let current: CurrentCall

    init(_ current: CurrentCall) { self.current = current }

    /// The server's initial metadata (once the first message or the end has been read).
    public var initialMetadata: Metadata { current.call.initialMetadata }
    /// The server's trailing metadata (once the sequence has ended).
    public var trailingMetadata: Metadata { current.call.trailingMetadata }
    /// Whether the message read last arrived with its compressed flag set (the server chooses
    /// per message).
    public var lastMessageWasCompressed: Bool { current.call.lastMessageCompressed.load(ordering: .relaxed) }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let current: CurrentCall
        /// Whether anything of the call has been read: a call is restarted only before that.
        var started = false

        public mutating func next() async throws -> Message? {
            var call = current.call
            while let event = try await call.events.next() {
                defer { started = true }
                if !started, case .end(let status, _) = event, status.origin == .unprocessed, current.canRestart {
                    // The server refused the stream before processing it, and the caller has
                    // seen nothing: the call goes once more (gRPC's transparent retry).
                    call = try await current.restartAfter(status)
                    continue
                }
                if !started { current.commit() }
                call.observe(event)
                switch event {
                case .headers: continue
                case .message(let bytes, let wireBytes, let compressed):
                    call.consumed(wireBytes)
                    call.lastMessageCompressed.store(compressed, ordering: .relaxed)
                    call.recording?.addResponse(bytes)
                    return try call.decode(Message.self, bytes)
                case .end(let status, _):
                    if status.code == .ok { return nil }
                    throw status
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(current: current) }
}

/// The call behind a streaming call's reader and writer. It may be replaced once, when the server
/// refused the first stream unprocessed (REFUSED_STREAM, or a GOAWAY below it) before the
/// caller read anything: the call goes again on a usable connection without the caller knowing
/// (gRPC's transparent retry). A server-streaming call's request is whole, so it simply starts
/// again. For calls whose requests the caller writes, the messages written so far are kept, up
/// to `replayLimit` bytes, and sent again on the new stream (with the end of the requests if it
/// was written); past that limit, or once the server has answered anything, nothing is kept and
/// a refusal reaches the caller as UNAVAILABLE.
final class CurrentCall: Sendable {
    private struct State {
        var call: ClientCall
        /// Framed request messages written so far (only while the call can still be restarted).
        var written: [ByteBuffer] = []
        var writtenBytes = 0
        var requestsFinished = false
        /// Whether the call can still go again: once only, and not once committed.
        var restartable: Bool
    }
    private let state: Mutex<State>
    /// Starts the call again on a usable connection (nil: never restarted).
    let restart: (@Sendable () async throws -> ClientCall)?
    let replayLimit: Int

    init(_ call: ClientCall, replayLimit: Int = 0, restart: (@Sendable () async throws -> ClientCall)? = nil) {
        state = Mutex(State(call: call, restartable: restart != nil))
        self.restart = restart
        self.replayLimit = replayLimit
    }

    var call: ClientCall { state.withLock { $0.call } }

    /// Whether a refusal now would restart the call.
    var canRestart: Bool { state.withLock { $0.restartable } }

    /// The server answered (or the reader saw anything): the call is committed to this stream.
    func commit() {
        state.withLock { state in
            guard state.restartable else { return }
            state.restartable = false
            state.written = []
        }
    }

    /// Sends a framed request message on the current stream, keeping it for a restart while
    /// there is room. The send is queued under the lock, so a restart's replay and the messages
    /// written after it reach the new stream in the order they were written.
    func send(_ framed: ByteBuffer) async throws {
        let sent: EventLoopFuture<Void> = state.withLock { state in
            if state.restartable {
                if state.writtenBytes + framed.readableBytes <= replayLimit {
                    state.written.append(framed)
                    state.writtenBytes += framed.readableBytes
                } else {
                    // Too much to keep: this call will not go again.
                    state.restartable = false
                    state.written = []
                }
            }
            return state.call.submitSend(framed)
        }
        try await sent.get()
    }

    /// Ends the request stream (END_STREAM), remembered for a restart.
    func finishRequests() {
        state.withLock { state in
            state.requestsFinished = true
            state.call.finishRequests()
        }
    }

    /// Moves the call onto `call` (a new stream of the same method), replaying what was written.
    /// False, and `call` is left to the caller, when the call can no longer be restarted.
    func replace(with call: ClientCall) -> Bool {
        state.withLock { state in
            guard state.restartable else { return false }
            state.restartable = false
            state.call = call
            for framed in state.written {
                // A failed send ends the new stream, which the reader then sees.
                _ = call.submitSend(framed)
            }
            state.written = []
            if state.requestsFinished { call.finishRequests() }
            return true
        }
    }

    /// Restarts the call after `refusal` if it still can, else throws `refusal`.
    func restartAfter(_ refusal: RPCError) async throws -> ClientCall {
        guard let restart, canRestart else { throw refusal }
        let again = try await restart()
        guard replace(with: again) else {
            again.cancel()
            throw refusal
        }
        return again
    }

    /// Reads the one response of a client-streaming call, restarting once after a refusal.
    func collectOne<Message: ProtobufKit.Message>(_ type: Message.Type) async throws -> UnaryResponse<Message> {
        do {
            return try await call.collectOne(type)
        } catch let error as RPCError where error.origin == .unprocessed {
            return try await restartAfter(error).collectOne(type)
        }
    }
}

/// Writes request messages of a client-streaming or bidirectional call.
public struct RequestWriter<Message: ProtobufKit.Message>: Sendable {
    let current: CurrentCall

    public func write(_ message: Message) async throws {
        try await current.send(try current.call.frame(message))
    }

    /// Ends the request stream (the server sees END_STREAM). Optional for client-streaming calls,
    /// which end it after the body returns.
    public func finish() {
        current.finishRequests()
    }
}
