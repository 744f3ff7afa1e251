import HTTP2
import NIOCore

/// Deadlines: one timer per connection (see DeadlineTimer) ends the calls whose deadline passed.
extension ServerConnectionState {
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

    /// Ends a call from the transport side (bad input, deadline, oversized headers): status now,
    /// handler cancelled. If the call's response is stuck behind the client's flow-control
    /// window, the trailers could never follow it, so the stream is reset (RST_STREAM CANCEL,
    /// as PROTOCOL-HTTP2 asks of a server that must end a call whose body is incomplete).
    func failCall(streamID: Int32, _ error: RPCError) {
        guard let call = calls[streamID], !call.finished else { return }
        call.requests.finish(throwing: error)
        call.task?.cancel()
        if call.headersSent && connection.session.isOutboundBlocked(streamID: streamID) {
            call.finished = true
            connection.session.resetStream(streamID, errorCode: 0x8)
            resumeWriters(streamID: streamID, throwing: error)
            connection.flush()
            return
        }
        finishCall(streamID: streamID, status: error, initialMetadata: { Metadata() })
    }
}
