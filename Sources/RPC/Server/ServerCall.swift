import NIOCore
import ProtobufKit

/// The untyped plumbing of one server call: request messages as bytes in, response bytes out.
/// Lives on any thread; every effect on the connection hops to its event loop.
final class ServerCall: Sendable {
    let streamID: Int32
    let context: ServerContext
    /// Request messages, with the number of wire bytes each took (for flow control).
    let requests: InboundQueue<ReceivedMessage>
    let connection: NIOLoopBound<ServerConnectionState>
    /// Decoding limits (the server's maximum message size).
    let decodingOptions: BinaryDecodingOptions

    init(streamID: Int32, context: ServerContext, requests: InboundQueue<ReceivedMessage>,
         connection: NIOLoopBound<ServerConnectionState>, decodingOptions: BinaryDecodingOptions) {
        self.streamID = streamID
        self.context = context
        self.requests = requests
        self.connection = connection
        self.decodingOptions = decodingOptions
    }

    /// The next request message, decoded; nil after the last. Reading is what opens the flow-control
    /// window: a handler that stops reading stops its client.
    func nextRequest<Message: ProtobufKit.Message>(_ type: Message.Type) async throws -> Message? {
        guard let received = try await requests.next() else { return nil }
        consumed(received.wireBytes)
        let message: Message
        do {
            message = try received.bytes.withUnsafeReadableBytes { try Message(decoding: $0, options: decodingOptions) }
        } catch let error as ProtobufDecodingError {
            throw RPCError(.internal, "could not decode \(Message.protoMessageName): \(error)")
        }
        // Field rules (buf.validate): a request that breaks one never reaches the handler of a
        // unary or server-streaming call (it is read before the handler starts), and a stream's
        // handler gets the error in place of the message.
        try RPCError.checkFieldRules(message)
        return message
    }

    /// Exactly one request message, as unary and server-streaming calls require. The handler of
    /// such a call starts once the request stream has ended, so this does not wait.
    func singleRequest<Message: ProtobufKit.Message>(_ type: Message.Type) async throws -> Message {
        guard let request = try await nextRequest(Message.self) else {
            throw RPCError(.internal, "the client sent no request message")
        }
        guard try await requests.next() == nil else {
            throw RPCError(.internal, "the client sent more than one request message to a unary method")
        }
        return request
    }

    /// The handler has used `count` request bytes: let the client send more.
    func consumed(_ count: Int) {
        let connection = self.connection
        let streamID = self.streamID
        if connection.eventLoop.inEventLoop {
            connection.value.consume(streamID: streamID, count: count)
        } else {
            connection.eventLoop.execute { connection.value.consume(streamID: streamID, count: count) }
        }
    }

    /// Sends one response message (response headers first, if not yet sent). `compressed`
    /// overrides the call's `compressResponses` for this message.
    func send<Message: ProtobufKit.Message>(_ message: Message, compressed: Bool? = nil) async throws {
        let connection = self.connection
        // Handlers run on the connection's loop (EventLoopTaskExecutor). A writer on another
        // executor (a detached task) moves onto the loop first.
        guard connection.eventLoop.inEventLoop else {
            let loop = EventLoopTaskExecutor(connection.eventLoop)
            return try await withTaskExecutorPreference(loop) { try await self.send(message, compressed: compressed) }
        }
        try connection.value.sendMessage(streamID: streamID, message, context: context, compressed: compressed)
        // Backpressure: wait while more than 64 KiB are queued behind flow control (a wait that
        // ends with the call, or when the handler's task is cancelled).
        if connection.value.mustWaitToWrite(streamID: streamID) {
            try await connection.value.waitToWrite(streamID: streamID)
        }
    }

    /// Ends the call with a status.
    func finish(_ error: RPCError?) {
        let connection = self.connection
        let streamID = self.streamID
        var status = error ?? RPCError(.ok)
        let trailing = context.trailingMetadata
        for entry in trailing { appendEntry(&status.metadata, entry) }
        let finalStatus = status
        let context = self.context
        if connection.eventLoop.inEventLoop {
            connection.value.handlerReturned(streamID: streamID, status: finalStatus, context: context)
            return
        }
        connection.eventLoop.execute {
            connection.value.handlerReturned(streamID: streamID, status: finalStatus, context: context)
        }
    }

    private func appendEntry(_ metadata: inout Metadata, _ entry: (name: String, value: Metadata.Value)) {
        switch entry.value {
        case .string(let text): metadata.add(entry.name, text)
        case .binary(let bytes): metadata.add(entry.name, binary: bytes)
        }
    }
}

/// Request messages of a call, decoded as they are read.
public struct RequestStream<Message: ProtobufKit.Message>: AsyncSequence, Sendable {
    public typealias Element = Message
    let call: ServerCall

    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: ServerCall

        public mutating func next() async throws -> Message? {
            try await call.nextRequest(Message.self)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: call) }
}

/// Writes response messages of a streaming call. May be kept and used after the handler's
/// first suspension, but not after the handler returns.
public struct ResponseWriter<Message: ProtobufKit.Message>: Sendable {
    let call: ServerCall

    public func write(_ message: Message) async throws {
        try await call.send(message)
    }

    /// Writes one message, compressed or not whatever the call's `compressResponses` says
    /// (compressed only if the client accepts gzip and the response headers named it: see
    /// `ServerContext.compressResponses`).
    public func write(_ message: Message, compressed: Bool) async throws {
        try await call.send(message, compressed: compressed)
    }
}
