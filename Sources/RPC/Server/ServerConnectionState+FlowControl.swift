import HTTP2
import NIOCore

/// Flow control and backpressure: request messages go to the handler as they complete, the
/// client's window reopens as the handler reads (ReceiveWindow), and a handler writing faster
/// than its client reads waits.
extension ServerConnectionState {
    func deliverMessages(streamID: Int32) {
        guard let call = calls[streamID] else { return }
        while !call.finished {
            let before = call.deframer.buffer.readableBytes
            let message: ByteBuffer?
            do {
                message = try call.deframer.next()
            } catch {
                failCall(streamID: streamID, error as? RPCError ?? RPCError(.internal, "could not read a request message: \(error)"))
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

    /// Whether a writer must wait before queuing more on this stream.
    func mustWaitToWrite(streamID: Int32) -> Bool {
        connection.session.pendingOutboundBytes(streamID: streamID) > Self.unsentLimit
    }

    /// Suspends a writer until its stream's queue drains, the call ends, or the writer's task is
    /// cancelled (a handler cancelled by its deadline or its client stops waiting for window).
    func waitToWrite(streamID: Int32) async throws {
        let id = nextWaiterID
        nextWaiterID += 1
        let bound = loopBound
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                writeWaiters[streamID, default: []].append((id, continuation))
            }
        } onCancel: {
            // Any thread: the waiter list belongs to the event loop.
            bound.eventLoop.execute { bound.value.cancelWriter(streamID: streamID, id: id) }
        }
    }

    /// Resumes one waiting writer with CancellationError (its task was cancelled).
    func cancelWriter(streamID: Int32, id: Int) {
        guard var waiters = writeWaiters[streamID], let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters.remove(at: index)
        writeWaiters[streamID] = waiters.isEmpty ? nil : waiters
        waiter.continuation.resume(throwing: CancellationError())
    }

    func connectionDidWrite(_ connection: HTTP2Connection) {
        for streamID in Array(writeWaiters.keys) where !mustWaitToWrite(streamID: streamID) || calls[streamID]?.finished != false {
            resumeWriters(streamID: streamID, throwing: nil)
        }
    }

    func resumeWriters(streamID: Int32, throwing error: Error?) {
        guard let waiters = writeWaiters.removeValue(forKey: streamID) else { return }
        for waiter in waiters {
            if let error { waiter.continuation.resume(throwing: error) } else { waiter.continuation.resume() }
        }
    }
}
