internal import CNGHTTP2

/// Which of the peer's HTTP/2 flow-control windows stopped a body.
public enum FlowControlWindow: Sendable, Hashable {
    /// The stream's own window (the peer's reader of that stream is slow or stopped).
    case stream
    /// The connection's window, shared by every stream (the peer as a whole is behind).
    case connection
}

/// Flow-control stalls: a stream whose body has bytes queued after nghttp2 sent all it was
/// allowed to is waiting for the peer's WINDOW_UPDATE. Operators watch these to tell a slow
/// network or a slow peer from a slow handler, so each wait is reported once
/// (`onFlowControlStall`), with the window that stopped it.
///
/// Only streams that may have stopped are looked at (those given bytes since the last send, or
/// left with bytes by nghttp2's read callback), once per `drainOutput`: a unary call whose one
/// message goes out whole costs a dictionary lookup, and nothing at all with no observer.
extension HTTP2Session {
    func queueStallCheck(_ stream: OutboundStream, _ streamID: Int32) {
        guard !stream.stallCheckQueued else { return }
        stream.stallCheckQueued = true
        stallCandidates.append(streamID)
    }

    /// After nghttp2 has written everything it may: bytes still queued on a stream are held by
    /// the peer's window. The connection's is named when it is exhausted (more streams than this
    /// one wait on it), else the stream's. Bytes queued with both windows open wait on
    /// something else (a stream nghttp2 has not opened yet) and are not a flow-control stall.
    func checkForStalls() {
        // The observer only counts: it never queues bytes, so the array is not changed while read.
        defer { stallCandidates.removeAll(keepingCapacity: true) }
        for streamID in stallCandidates {
            guard let stream = outbound[streamID] else { continue }
            stream.stallCheckQueued = false
            guard stream.pendingBytes > 0, !stream.stalled else { continue }
            let window: FlowControlWindow
            if nghttp2_session_get_remote_window_size(session) <= 0 {
                window = .connection
            } else if nghttp2_session_get_stream_remote_window_size(session, streamID) <= 0 {
                window = .stream
            } else {
                continue
            }
            stream.stalled = true
            onFlowControlStall?(window)
        }
    }
}
