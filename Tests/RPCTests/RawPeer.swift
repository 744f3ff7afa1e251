import HTTP2
import NIOCore
import NIOPosix
import Synchronization

/// A bare HTTP/2 server on 127.0.0.1 for client tests: no gRPC server behind it, each frame
/// answered as the test says. It plays what a real gRPC server rarely does on cue: a proxy's
/// 502 page, a GOAWAY racing requests, a refused stream.
///
/// `handler` runs on the connection's event loop for every event, with the connection's number
/// (0 for the first accepted) and its session to answer through; output is flushed after each
/// batch of events.
final class RawPeer: Sendable {
    typealias Handler = @Sendable (_ connection: Int, _ event: HTTP2Session.Event, _ session: HTTP2Session) -> Void

    let listener: Channel
    private let counter: Counter

    /// Connections accepted so far.
    var connectionCount: Int { counter.count.load(ordering: .relaxed) }
    var port: Int { listener.localAddress!.port! }

    private init(listener: Channel, counter: Counter) {
        self.listener = listener
        self.counter = counter
    }

    static func start(_ handler: @escaping Handler) async throws -> RawPeer {
        let counter = Counter()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let index = counter.next()
                    let session = try HTTP2Session(role: .server)
                    let connection = HTTP2Connection(session: session, eventLoop: channel.eventLoop)
                    connection.delegate = Delegate(index: index, handler: handler)
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return RawPeer(listener: listener, counter: counter)
    }

    func close() async {
        try? await listener.close()
    }

    /// Numbers connections as they are accepted.
    private final class Counter: Sendable {
        let count = Atomic<Int>(0)
        func next() -> Int { count.wrappingAdd(1, ordering: .relaxed).oldValue }
    }

    private final class Delegate: HTTP2ConnectionDelegate {
        let index: Int
        let handler: Handler
        init(index: Int, handler: @escaping Handler) {
            self.index = index
            self.handler = handler
        }
        func connection(_ connection: HTTP2Connection, received event: HTTP2Session.Event) {
            handler(index, event, connection.session)
        }
        func connectionClosed(_ connection: HTTP2Connection) {}
    }

    // MARK: Answers

    /// A gRPC response with one message (`message`, already encoded) and status OK.
    static func answerOK(_ session: HTTP2Session, streamID: Int32, message: [UInt8] = []) {
        var frame = ByteBufferAllocator().buffer(capacity: message.count + 5)
        frame.writeInteger(UInt8(0))
        frame.writeInteger(UInt32(message.count))
        frame.writeBytes(message)
        try? session.sendResponseHeaders(streamID: streamID, [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")], endStream: false)
        try? session.sendData(streamID: streamID, frame)
        try? session.finish(streamID: streamID, trailers: [HeaderField("grpc-status", "0")])
    }

    /// A response that is not gRPC: `status` and `contentType` (omitted when nil), and `body`
    /// if given (otherwise the headers end the stream).
    static func answer(_ session: HTTP2Session, streamID: Int32, status: Int, contentType: String?, body: String?) {
        var fields = [HeaderField(":status", String(status))]
        if let contentType { fields.append(HeaderField("content-type", contentType)) }
        guard let body else {
            try? session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
            return
        }
        var bytes = ByteBufferAllocator().buffer(capacity: body.utf8.count)
        bytes.writeString(body)
        try? session.sendResponseHeaders(streamID: streamID, fields, endStream: false)
        try? session.sendData(streamID: streamID, bytes)
        try? session.finish(streamID: streamID)
    }
}
