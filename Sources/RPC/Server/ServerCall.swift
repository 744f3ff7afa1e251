import NIOCore
import ProtobufKit

/// The untyped plumbing of one server call: request messages as bytes in, response bytes out.
/// Lives on any thread; every effect on the connection hops to its event loop.
final class ServerCall: Sendable {
    let streamID: Int32
    let context: ServerContext
    /// Request messages, with the number of wire bytes each took (for flow control).
    let requests: AsyncThrowingStream<(message: ByteBuffer, wireBytes: Int), Error>
    let connection: NIOLoopBound<ServerConnectionState>
    let options: RPCServer.Options

    init(streamID: Int32, context: ServerContext, requests: AsyncThrowingStream<(message: ByteBuffer, wireBytes: Int), Error>,
         connection: NIOLoopBound<ServerConnectionState>, options: RPCServer.Options) {
        self.streamID = streamID
        self.context = context
        self.requests = requests
        self.connection = connection
        self.options = options
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

    /// Sends one response message (response headers first, if not yet sent).
    func send(_ message: [UInt8]) async throws {
        if message.count > options.maxMessageSize {
            throw RPCError(.resourceExhausted, "response message of \(message.count) bytes is over the limit of \(options.maxMessageSize)")
        }
        let connection = self.connection
        let streamID = self.streamID
        let initial = context.initialMetadata
        // Handlers run on the connection's loop (EventLoopTaskExecutor). A writer on another
        // executor (a detached task) moves onto the loop first.
        guard connection.eventLoop.inEventLoop else {
            let loop = EventLoopTaskExecutor(connection.eventLoop)
            return try await withTaskExecutorPreference(loop) { try await self.send(message) }
        }
        try connection.value.sendMessage(streamID: streamID, message, initialMetadata: initial)
        // Backpressure: wait while more than 64 KiB are queued behind flow control.
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
        let initial = context.initialMetadata
        let finalStatus = status
        if connection.eventLoop.inEventLoop {
            connection.value.finishCall(streamID: streamID, status: finalStatus, initialMetadata: initial)
            return
        }
        connection.eventLoop.execute {
            connection.value.finishCall(streamID: streamID, status: finalStatus, initialMetadata: initial)
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
        var base: AsyncThrowingStream<(message: ByteBuffer, wireBytes: Int), Error>.AsyncIterator
        let call: ServerCall

        public mutating func next() async throws -> Message? {
            guard let (bytes, wireBytes) = try await base.next() else { return nil }
            // Reading is what opens the window: a handler that stops reading stops its client.
            call.consumed(wireBytes)
            do {
                return try bytes.withUnsafeReadableBytes { try Message(decoding: $0, options: .defaults { $0.maxSize = call.options.maxMessageSize }) }
            } catch let error as ProtobufDecodingError {
                throw RPCError(.internal, "could not decode \(Message.protoMessageName): \(error)")
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: call.requests.makeAsyncIterator(), call: call) }
}

/// Writes response messages of a streaming call. May be kept and used after the handler's
/// first suspension, but not after the handler returns.
public struct ResponseWriter<Message: ProtobufKit.Message>: Sendable {
    let call: ServerCall

    public func write(_ message: Message) async throws {
        try await call.send(message.serializedBytes())
    }
}
