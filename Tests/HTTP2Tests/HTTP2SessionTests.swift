@testable import HTTP2
import NIOCore
import Testing

/// A client and a server session exchanging bytes in memory: nghttp2 on both ends, no sockets.
struct SessionPair {
    let client: HTTP2Session
    let server: HTTP2Session
    var clientEvents: [HTTP2Session.Event] = []
    var serverEvents: [HTTP2Session.Event] = []

    init(serverSettings: HTTP2Session.Settings = .init()) throws {
        client = try HTTP2Session(role: .client)
        server = try HTTP2Session(role: .server, settings: serverSettings)
    }

    /// Moves bytes both ways until neither side has anything to send.
    mutating func exchange() throws {
        for _ in 0..<50 {
            var toServer = ByteBuffer()
            try client.drainOutput(into: &toServer)
            var toClient = ByteBuffer()
            try server.drainOutput(into: &toClient)
            if toServer.readableBytes == 0 && toClient.readableBytes == 0 { return }
            if toServer.readableBytes > 0 { serverEvents += try server.receive(toServer) }
            if toClient.readableBytes > 0 { clientEvents += try client.receive(toClient) }
        }
        Issue.record("the sessions kept talking after 50 rounds")
    }
}

@Suite("nghttp2 session, sans-I/O")
struct HTTP2SessionTests {
    static let request = [
        HeaderField(":method", "POST"), HeaderField(":scheme", "http"), HeaderField(":path", "/pkg.Svc/Call"),
        HeaderField(":authority", "localhost"), HeaderField("content-type", "application/grpc"), HeaderField("te", "trailers"),
    ]

    @Test("a request with a body and a response with trailers")
    func requestResponse() throws {
        var pair = try SessionPair()
        let stream = try pair.client.startRequest(Self.request)
        try pair.client.sendData(streamID: stream, ByteBuffer(string: "hello"))
        try pair.client.finish(streamID: stream)
        try pair.exchange()

        guard case .headers(let id, let fields, false)? = pair.serverEvents.first(where: { if case .headers = $0 { true } else { false } }) else {
            Issue.record("server saw no request headers: \(pair.serverEvents)")
            return
        }
        #expect(id == stream)
        #expect(fields.contains(HeaderField(":path", "/pkg.Svc/Call")))
        let body = pair.serverEvents.compactMap { event -> String? in
            if case .data(_, let bytes) = event { return String(buffer: bytes) }
            return nil
        }.joined()
        #expect(body == "hello")
        #expect(pair.serverEvents.contains { if case .endStream(stream) = $0 { true } else { false } })
        pair.server.consume(streamID: stream, count: 5)

        try pair.server.sendResponseHeaders(streamID: stream, [HeaderField(":status", "200")], endStream: false)
        try pair.server.sendData(streamID: stream, ByteBuffer(string: "world"))
        try pair.server.finish(streamID: stream, trailers: [HeaderField("grpc-status", "0")])
        try pair.exchange()

        let headerBlocks = pair.clientEvents.compactMap { event -> [HeaderField]? in
            if case .headers(_, let fields, _) = event { return fields }
            return nil
        }
        #expect(headerBlocks.count == 2)
        #expect(headerBlocks.first?.contains(HeaderField(":status", "200")) == true)
        #expect(headerBlocks.last == [HeaderField("grpc-status", "0")])
        let responseBody = pair.clientEvents.compactMap { event -> String? in
            if case .data(_, let bytes) = event { return String(buffer: bytes) }
            return nil
        }.joined()
        #expect(responseBody == "world")
        #expect(pair.clientEvents.contains { if case .streamClosed(stream, 0) = $0 { true } else { false } })
    }

    @Test("data written later resumes a deferred stream")
    func deferredData() throws {
        var pair = try SessionPair()
        let stream = try pair.client.startRequest(Self.request)
        try pair.exchange()
        for chunk in ["a", "b", "c"] {
            try pair.client.sendData(streamID: stream, ByteBuffer(string: chunk))
            try pair.exchange()
        }
        try pair.client.finish(streamID: stream)
        try pair.exchange()
        let body = pair.serverEvents.compactMap { event -> String? in
            if case .data(_, let bytes) = event { return String(buffer: bytes) }
            return nil
        }.joined()
        #expect(body == "abc")
        #expect(pair.serverEvents.contains { if case .endStream(stream) = $0 { true } else { false } })
    }

    @Test("a Trailers-Only response ends the stream with one header block")
    func trailersOnly() throws {
        var pair = try SessionPair()
        let stream = try pair.client.startRequest(Self.request, endStream: true)
        try pair.exchange()
        try pair.server.sendResponseHeaders(streamID: stream, [HeaderField(":status", "200"), HeaderField("grpc-status", "12")], endStream: true)
        try pair.exchange()
        #expect(pair.clientEvents.contains { if case .headers(stream, _, true) = $0 { true } else { false } })
    }

    @Test("the client's reset reaches the server as RST_STREAM CANCEL")
    func cancel() throws {
        var pair = try SessionPair()
        let stream = try pair.client.startRequest(Self.request)
        try pair.exchange()
        pair.client.resetStream(stream, errorCode: 8)
        try pair.exchange()
        #expect(pair.serverEvents.contains { if case .streamClosed(stream, 8) = $0 { true } else { false } })
    }

    @Test("with manual flow control the sender stalls until the receiver consumes")
    func flowControl() throws {
        var settings = HTTP2Session.Settings()
        settings.initialWindowSize = 1024
        var pair = try SessionPair(serverSettings: settings)
        let stream = try pair.client.startRequest(Self.request)
        try pair.exchange()
        try pair.client.sendData(streamID: stream, ByteBuffer(repeating: 7, count: 4096))
        try pair.exchange()
        func received() -> Int {
            pair.serverEvents.reduce(0) { total, event in
                if case .data(_, let bytes) = event { return total + bytes.readableBytes }
                return total
            }
        }
        #expect(received() == 1024)
        pair.server.consume(streamID: stream, count: 1024)
        try pair.exchange()
        #expect(received() == 2048)
    }

    @Test("garbage from the peer is a protocol error, with GOAWAY queued")
    func garbage() throws {
        let server = try HTTP2Session(role: .server)
        #expect(throws: HTTP2Error.self) { _ = try server.receive(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }
    }
}

@Suite("Frame scanner")
struct FrameScannerTests {
    /// Frames: a SETTINGS ACK, a 20-byte DATA frame, another SETTINGS ACK, a HEADERS frame.
    static let stream: [UInt8] = [0, 0, 0, 4, 1, 0, 0, 0, 0]
        + [0, 0, 20, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 7, count: 20)
        + [0, 0, 0, 4, 1, 0, 0, 0, 0]
        + [0, 0, 3, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84]

    @Test("every byte reaches nghttp2 exactly once, however reads split, and the second ACK is removed", arguments: [0, 2])
    func splits(ackToRemove: Int) {
        let expected = ackToRemove == 2 ? Array(Self.stream[0..<38] + Self.stream[47...]) : Self.stream
        for split in 0...Self.stream.count {
            for second in split...Self.stream.count {
                var scanner = FrameScanner(isServer: false, ackToRemove: ackToRemove)
                var output: [UInt8] = []
                var headerFrames = 0
                for range in [0..<split, split..<second, second..<Self.stream.count] {
                    let (events, bytes) = scanner.process(ByteBuffer(bytes: Self.stream[range]))
                    output += Array(bytes.readableBytesView)
                    headerFrames += events.count
                }
                #expect(output == expected, "split at \(split), \(second)")
                #expect(headerFrames == 1)
            }
        }
    }
}
