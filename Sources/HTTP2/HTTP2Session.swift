internal import CNGHTTP2
import NIOCore

/// One HTTP/2 connection's protocol state, kept by nghttp2 and driven without I/O.
///
/// Bytes from the peer go in through `receive(_:)`, which returns what happened (headers, data,
/// stream ends and resets). Frames to send accumulate inside nghttp2 and come out through
/// `drainOutput(into:)`. nghttp2 is never re-entered from one of its own callbacks: callbacks only
/// record events, and the owner acts on them after `receive` returns.
///
/// Not thread-safe: one session per connection, confined to that connection's event loop.
public final class HTTP2Session {
    /// Which end of the connection this is.
    public enum Role: Sendable { case server, client }

    /// Settings this end announces.
    public struct Settings: Sendable, Hashable {
        /// SETTINGS_MAX_CONCURRENT_STREAMS: streams the peer may open at once.
        public var maxConcurrentStreams: UInt32 = 100
        /// SETTINGS_INITIAL_WINDOW_SIZE: bytes the peer may send on a stream before we consume.
        public var initialWindowSize: UInt32 = 65_535
        /// Bytes the peer may send on the whole connection before we acknowledge them. With manual
        /// flow control the connection window is acknowledged as DATA arrives and each stream's
        /// window only as its reader reads, so a stopped reader holds back its own stream and
        /// never the connection; what is buffered stays bounded by streams x stream window.
        /// This only needs to cover the bytes in flight (bandwidth x delay): 4 MiB is 32 Gbit/s
        /// at a 1 ms round trip, or 320 Mbit/s at 100 ms.
        public var connectionWindowSize: Int32 = 4 * 1024 * 1024
        /// SETTINGS_MAX_HEADER_LIST_SIZE: largest header list accepted (decoded size).
        public var maxHeaderListSize: UInt32 = 16 * 1024
        /// Whether received DATA is acknowledged only when the application calls `consume`
        /// (so a slow handler pushes back on its peer), instead of as soon as it arrives.
        public var manualFlowControl = true

        public init() {}
    }

    /// What the peer did, in the order nghttp2 reported it.
    public enum Event: Sendable {
        /// A complete header block: request or response headers, or trailers.
        case headers(streamID: Int32, fields: [HeaderField], endStream: Bool)
        /// Part of a stream's body. Call `consume` once the bytes are used (manual flow control).
        case data(streamID: Int32, bytes: ByteBuffer)
        /// The peer ended its side of the stream with an empty DATA frame or with trailers.
        case endStream(streamID: Int32)
        /// The stream is closed (`errorCode` 0 for a normal close, else the RST_STREAM code).
        case streamClosed(streamID: Int32, errorCode: UInt32)
        /// The peer sent GOAWAY: streams above `lastStreamID` were not processed (nghttp2 then
        /// closes this end's streams above it with REFUSED_STREAM). `debugData` is the frame's
        /// opaque data as text, such as gRPC's "too_many_pings".
        case goAway(lastStreamID: Int32, errorCode: UInt32, debugData: String)
        /// A PING or SETTINGS frame from the peer, not an ACK (for flood accounting by the owner).
        case ping
        case settings
        /// The peer acknowledged our PING (keepalive).
        case pingAck
        /// A complete header block whose decoded list was larger than SETTINGS_MAX_HEADER_LIST_SIZE,
        /// in place of its `.headers`: a stream error for the owner to answer (the fields were
        /// decoded, to keep HPACK's table in step, but not kept). `size` is the decoded size.
        case headerListTooLarge(streamID: Int32, size: Int, endStream: Bool)
        /// A HEADERS or CONTINUATION frame arrived (reported by `FrameScanner`, which reads the
        /// frame headers before nghttp2 does, for header-size and CONTINUATION accounting).
        case headerFrame(streamID: Int32, length: Int, isContinuation: Bool)
        /// An RST_STREAM from the peer (for rapid-reset accounting by the owner).
        case resetByPeer(streamID: Int32)
    }

    let role: Role
    public private(set) var settings = Settings()
    var session: OpaquePointer?
    var events: [Event] = []
    /// The header block being received: its fields and decoded size so far. HTTP/2 lets no other
    /// frame come between a HEADERS frame and its CONTINUATIONs, so there is at most one.
    var incomingBlock = IncomingHeaderBlock(streamID: 0)

    struct IncomingHeaderBlock {
        var streamID: Int32
        var fields: [HeaderField] = []
        var size = 0
        /// Set once `size` passed the limit: later fields are decoded but dropped.
        var tooLarge = false

        init(streamID: Int32) {
            self.streamID = streamID
            fields.reserveCapacity(streamID == 0 ? 0 : 12)
        }
    }
    /// Outbound bodies, per stream.
    var outbound: [Int32: OutboundStream] = [:]
    /// The buffer `receive` is feeding to nghttp2, and its bytes: DATA payloads nghttp2 reports
    /// point into it, so they become slices of it instead of copies.
    var input: (buffer: ByteBuffer, bytes: UnsafeRawBufferPointer)?
    /// Set when a callback fails; `receive` turns it into an error.
    var callbackFailure: HTTP2Error?
    /// DATA payload bytes received during the current `receive`: the connection window is
    /// acknowledged for them once nghttp2 returns (callbacks never re-enter nghttp2).
    var receivedDataBytes = 0
    /// Streams open on this connection (from their request headers until nghttp2 closes them),
    /// either role. A set rather than a count: nghttp2 also reports closes of streams that never
    /// carried a request (created by PRIORITY frames, for example).
    var activeStreams: Set<Int32> = []
    /// Number of streams open on this connection (see `activeStreams`).
    public var activeStreamCount: Int { activeStreams.count }
    /// Set when this end queues HEADERS or DATA on a stream; the owner reads and clears it
    /// (`takeStreamFramesSent`), for keepalive policing: pings next to real traffic are fine.
    var streamFramesSent = false
    /// Streams whose queued body may be stuck behind the peer's window, looked at once
    /// `drainOutput` has let nghttp2 send all it may (see `HTTP2Session+FlowControlStalls`).
    var stallCandidates: [Int32] = []
    /// Told once per wait when a stream's queued body stops behind the peer's window. Nil (the
    /// default) skips the bookkeeping altogether.
    public var onFlowControlStall: ((FlowControlWindow) -> Void)?

    /// A stream's body on its way out. A class, updated in place: a struct copied out of the
    /// dictionary would share its buffer with the stored copy, and every write would copy it.
    final class OutboundStream {
        /// Bytes nghttp2 has not taken yet (nil when none: most bodies are one message).
        var pending: ByteBuffer?
        var endStream = false
        var trailers: [HeaderField]?
        var deferred = false
        /// Counted as stalled since nghttp2 last took bytes of it (one count per wait).
        var stalled = false
        /// Already in `stallCandidates`.
        var stallCheckQueued = false

        var pendingBytes: Int { pending?.readableBytes ?? 0 }

        func append(_ bytes: ByteBuffer) {
            if pending == nil || pending!.readableBytes == 0 {
                pending = bytes
            } else {
                pending!.writeImmutableBuffer(bytes)
            }
        }
    }

    public init(role: Role, settings: Settings = Settings()) throws {
        self.role = role
        self.settings = settings
        var callbacks: OpaquePointer?
        try check(nghttp2_session_callbacks_new(&callbacks), "creating callbacks")
        defer { nghttp2_session_callbacks_del(callbacks) }
        HTTP2Session.installCallbacks(callbacks)

        var option: OpaquePointer?
        try check(nghttp2_option_new(&option), "creating options")
        defer { nghttp2_option_del(option) }
        if settings.manualFlowControl { nghttp2_option_set_no_auto_window_update(option, 1) }
        nghttp2_option_set_max_settings(option, 32)
        if role == .server { _ = CNGHTTP2_disable_stream_reset_rate_limit(option) }

        let userData = Unmanaged.passUnretained(self).toOpaque()
        switch role {
        case .server: try check(nghttp2_session_server_new2(&session, callbacks, userData, option), "creating a server session")
        case .client: try check(nghttp2_session_client_new2(&session, callbacks, userData, option), "creating a client session")
        }
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
        ]
        if role == .client {
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams))
        }
        // A server's stream limit is advertised and enforced by HTTP2Connection instead (see
        // FrameScanner): nghttp2 would answer a peer over the limit with a connection error.
        try check(nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), entries, entries.count), "submitting SETTINGS")
        if settings.manualFlowControl && settings.connectionWindowSize > 65_535 {
            // A WINDOW_UPDATE on stream 0 right after SETTINGS (the connection window has no setting).
            try check(nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize),
                      "raising the connection window")
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: Input

    /// Feeds bytes from the peer; returns the events they produced.
    ///
    /// - Throws: `HTTP2Error` when the peer broke the protocol badly enough that nghttp2 gave up
    ///   on the connection (it has queued a GOAWAY: drain the output, then close).
    public func receive(_ buffer: ByteBuffer) throws -> [Event] {
        let result = buffer.withUnsafeReadableBytes { bytes in
            input = (buffer, bytes)
            defer { input = nil }
            return nghttp2_session_mem_recv(session, bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count)
        }
        if receivedDataBytes > 0 {
            // The connection's share of flow control is given back at once; each stream's share
            // waits for its reader (`consume`).
            if settings.manualFlowControl { nghttp2_session_consume_connection(session, receivedDataBytes) }
            receivedDataBytes = 0
        }
        let produced = events
        events = spare
        spare = []
        if let failure = callbackFailure {
            callbackFailure = nil
            throw failure
        }
        if result < 0 { throw HTTP2Error(code: Int32(result), context: "receiving") }
        return produced
    }

    /// Gives back an array that `receive` returned, once its events are handled, so the next
    /// `receive` appends into its storage instead of growing a new array from nothing: that was
    /// several allocations per read, the larger ones big enough to make glibc's malloc
    /// consolidate its free lists (seen in a unary call's server profile).
    public func recycle(_ handled: consuming [Event]) {
        var handled = handled
        handled.removeAll(keepingCapacity: true)
        if handled.capacity <= 256 { spare = handled }
    }

    /// See `recycle`.
    private var spare: [Event] = []

    // MARK: Output

    /// Moves every frame nghttp2 wants to send into `output`.
    public func drainOutput(into output: inout ByteBuffer) throws {
        while true {
            var data: UnsafePointer<UInt8>?
            let length = nghttp2_session_mem_send(session, &data)
            if length < 0 { throw HTTP2Error(code: Int32(length), context: "sending") }
            if length == 0 { break }
            output.writeBytes(UnsafeRawBufferPointer(start: data, count: length))
        }
        if !stallCandidates.isEmpty { checkForStalls() }
        let produced = events
        if !produced.isEmpty {
            // Stream closes can also be reported while sending (for example after our RST_STREAM).
            pendingEventsFromSend.append(contentsOf: produced)
            events = []
        }
    }

    /// Events that surfaced while sending rather than receiving; the owner collects them.
    public var pendingEventsFromSend: [Event] = []

    /// Whether nghttp2 has frames to send, or wants more input.
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }
    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }

    // MARK: Streams

    /// Server: sends response headers; the body follows with `sendData`, then `sendTrailers`.
    /// With `endStream` the headers alone end the stream (a Trailers-Only response).
    public func sendResponseHeaders(streamID: Int32, _ fields: [HeaderField], endStream: Bool) throws {
        streamFramesSent = true
        return try withNameValues(fields) { nva in
            if endStream {
                let flags = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
                try check(nghttp2_submit_headers(session, flags, streamID, nil, nva.baseAddress, nva.count, nil), "submitting headers")
            } else {
                outbound[streamID] = OutboundStream()
                var provider = HTTP2Session.dataProvider()
                try check(nghttp2_submit_response(session, streamID, nva.baseAddress, nva.count, &provider), "submitting a response")
            }
        }
    }

    /// Client: opens a stream with request headers. Returns its stream id.
    public func startRequest(_ fields: [HeaderField], endStream: Bool = false) throws -> Int32 {
        try withNameValues(fields) { nva in
            var provider = HTTP2Session.dataProvider()
            let streamID = endStream
                ? nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, nil, nil)
                : nghttp2_submit_request(session, nil, nva.baseAddress, nva.count, &provider, nil)
            if streamID < 0 { throw HTTP2Error(code: streamID, context: "submitting a request") }
            activeStreams.insert(streamID)
            if !endStream { outbound[streamID] = OutboundStream() }
            return streamID
        }
    }

    /// Queues body bytes on a stream whose headers were sent.
    public func sendData(streamID: Int32, _ bytes: ByteBuffer) throws {
        guard let stream = outbound[streamID] else { throw HTTP2Error(code: NGHTTP2_ERR_STREAM_CLOSED.rawValue, context: "sending data") }
        streamFramesSent = true
        stream.append(bytes)
        if onFlowControlStall != nil { queueStallCheck(stream, streamID) }
        try resumeIfDeferred(stream, streamID)
    }

    /// Ends our side of the stream: with trailers (a server's status), or with END_STREAM on the
    /// last DATA frame (a client's end of request).
    public func finish(streamID: Int32, trailers: [HeaderField]? = nil) throws {
        guard let stream = outbound[streamID] else { throw HTTP2Error(code: NGHTTP2_ERR_STREAM_CLOSED.rawValue, context: "finishing a stream") }
        stream.endStream = true
        stream.trailers = trailers
        try resumeIfDeferred(stream, streamID)
    }

    private func resumeIfDeferred(_ stream: OutboundStream, _ streamID: Int32) throws {
        guard stream.deferred else { return }
        stream.deferred = false
        let result = nghttp2_session_resume_data(session, streamID)
        if result != 0 && result != NGHTTP2_ERR_INVALID_ARGUMENT.rawValue {
            throw HTTP2Error(code: result, context: "resuming data")
        }
    }

    /// Resets a stream (RST_STREAM with `errorCode`, for example CANCEL = 8).
    public func resetStream(_ streamID: Int32, errorCode: UInt32) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
        outbound[streamID] = nil
    }

    /// Acknowledges `count` body bytes of a stream as used, reopening the stream's flow-control
    /// window (the connection's was reopened when they arrived). A closed stream is ignored.
    public func consume(streamID: Int32, count: Int) {
        guard count > 0 else { return }
        nghttp2_session_consume_stream(session, streamID, count)
    }

    /// Whether HEADERS or DATA were queued on a stream since the last call (then clears it).
    public func takeStreamFramesSent() -> Bool {
        defer { streamFramesSent = false }
        return streamFramesSent
    }

    /// Whether a stream's outbound body is stuck behind flow control: bytes wait that nghttp2
    /// has not taken, or the peer's window (stream or connection) is exhausted, so not even an
    /// empty DATA frame ending the body could go. Trailers queued behind it would wait too.
    public func isOutboundBlocked(streamID: Int32) -> Bool {
        guard outbound[streamID] != nil else { return false }
        if pendingOutboundBytes(streamID: streamID) > 0 { return true }
        return nghttp2_session_get_stream_remote_window_size(session, streamID) <= 0
            || nghttp2_session_get_remote_window_size(session) <= 0
    }

    /// Graceful shutdown, step one: tells the client to open no new streams.
    public func sendShutdownNotice() {
        nghttp2_submit_shutdown_notice(session)
    }

    /// Sends GOAWAY naming the last stream this end processed, or `lastStreamID` when given (a
    /// test peer that refuses streams it has seen, as a server racing a shutdown does).
    public func sendGoAway(errorCode: UInt32, debugData: String = "", lastStreamID: Int32? = nil) {
        let last = lastStreamID ?? nghttp2_session_get_last_proc_stream_id(session)
        var debug = Array(debugData.utf8)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, errorCode, &debug, debug.count)
    }

    /// Sends a PING (keepalive); the peer's ACK arrives as an `.ping` event.
    public func sendPing() {
        nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
    }

    /// Number of streams currently open.
    public var openStreamCount: Int { outbound.count }

    /// Body bytes queued on a stream that nghttp2 has not sent yet (flow control holds them).
    public func pendingOutboundBytes(streamID: Int32) -> Int {
        outbound[streamID]?.pendingBytes ?? 0
    }

    // MARK: Helpers

    func check(_ result: Int32, _ context: String) throws {
        if result != 0 { throw HTTP2Error(code: result, context: context) }
    }

    /// Runs `body` with the fields as nghttp2 name/value pairs. nghttp2 copies them, so the
    /// pairs and one block holding every name and value only need to live for the call; both are
    /// temporary allocations (on the stack for the usual few hundred bytes).
    func withNameValues<R>(_ fields: [HeaderField], _ body: (UnsafeBufferPointer<nghttp2_nv>) throws -> R) throws -> R {
        var byteCount = 0
        for field in fields { byteCount += field.name.utf8.count + field.value.utf8.count }
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(byteCount, 1)) { block in
            try withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fields.count, 1)) { pairs in
                var offset = 0
                func copy(_ text: String) -> (UnsafeMutablePointer<UInt8>, Int) {
                    let start = block.baseAddress! + offset
                    var text = text
                    let count = text.withUTF8 { utf8 in
                        if let base = utf8.baseAddress { start.update(from: base, count: utf8.count) }
                        return utf8.count
                    }
                    offset += count
                    return (start, count)
                }
                for (index, field) in fields.enumerated() {
                    let (name, nameLength) = copy(field.name)
                    let (value, valueLength) = copy(field.value)
                    let flags = HeaderField.changesEveryMessage(field.name) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE
                    pairs.initializeElement(at: index, to: CNGHTTP2_make_nv(name, nameLength, value, valueLength, UInt8(flags.rawValue)))
                }
                return try body(UnsafeBufferPointer(rebasing: pairs[0..<fields.count]))
            }
        }
    }
}

/// One header field. Names are lower case on the HTTP/2 wire.
public struct HeaderField: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// Strings longer than 15 UTF-8 bytes live on the heap; these arrive on nearly every gRPC
    /// request, so a received one reuses a shared copy instead of allocating its own.
    private static let common = ["application/grpc", "grpc-accept-encoding", "identity,deflate,gzip", "identity,gzip,deflate"]

    /// Headers whose value is new on nearly every message (ids, trace context, remaining time).
    /// HPACK sends them as literals without indexing (RFC 7541 §6.2.2): entering them in the
    /// dynamic table would cost a copy each time and only evict entries that do repeat.
    static func changesEveryMessage(_ name: String) -> Bool {
        switch name {
        case "traceparent", "x-request-id", "x-correlation-id", "grpc-timeout", "grpc-message", "content-length": return true
        default: return false
        }
    }

    /// A received name or value as a String.
    static func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        if bytes.count > 15 {
            for candidate in common where candidate.utf8.count == bytes.count && candidate.utf8.elementsEqual(bytes) {
                return candidate
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A failure reported by nghttp2 (its negative error code) or by the session.
public struct HTTP2Error: Error, Hashable, CustomStringConvertible {
    public let code: Int32
    public let context: String
    public init(code: Int32, context: String) {
        self.code = code
        self.context = context
    }
    public var description: String {
        "HTTP/2 error while \(context): \(String(cString: nghttp2_strerror(code))) (\(code))"
    }
}
