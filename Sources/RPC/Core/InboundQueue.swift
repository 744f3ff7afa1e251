import NIOCore
import Synchronization

/// One received message and the wire bytes it took (prefix included), which the reader
/// acknowledges to the peer once it has used the message (manual flow control).
struct ReceivedMessage: Sendable {
    var bytes: ByteBuffer
    var wireBytes: Int
}

/// Messages arriving for one call, from the connection's event loop (the producer) to the task
/// that reads them (the single consumer).
///
/// Why not `AsyncThrowingStream`: the standard library's streams are generic code that is never
/// specialized for the element type, so every yield and every `next()` looks up generic metadata
/// and allocates; on a unary call that was several percent of the server's CPU (`make bench-rpc`).
/// This queue is specialized for its element where it is used, and `next()` returns without
/// suspending when an element or the end is already there, which is always the case for the
/// single request of a unary call.
///
/// Elements yielded before the end are delivered before it; after the end, yields are dropped.
/// A reader whose task is cancelled while waiting gets CANCELLED.
final class InboundQueue<Element: Sendable>: Sendable {
    private enum End {
        case finished
        case failed(any Error)
    }

    private struct State {
        var buffer: [Element] = []
        var head = 0
        var end: End?
        var waiter: UnsafeContinuation<Element?, any Error>?

        /// Takes the next element or the end, if either is there.
        mutating func poll() -> Result<Element?, any Error>? {
            if head < buffer.count {
                let element = buffer[head]
                head += 1
                if head == buffer.count {
                    buffer.removeAll(keepingCapacity: true)
                    head = 0
                }
                return .success(element)
            }
            switch end {
            case .finished: return .success(nil)
            case .failed(let error): return .failure(error)
            case nil: return nil
            }
        }
    }

    private let state = Mutex(State())

    init() {}

    /// Adds an element, or hands it straight to a waiting reader.
    func yield(_ element: Element) {
        let waiter = state.withLock { state -> UnsafeContinuation<Element?, any Error>? in
            guard state.end == nil else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            // A call's queue usually sees a few events (headers, a message, the end): room for
            // them at once instead of growing one by one.
            if state.buffer.capacity == 0 { state.buffer.reserveCapacity(4) }
            state.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    /// Ends the queue, normally or with an error. Only the first end counts.
    func finish(throwing error: (any Error)? = nil) {
        let waiter = state.withLock { state -> UnsafeContinuation<Element?, any Error>? in
            guard state.end == nil else { return nil }
            state.end = error.map { .failed($0) } ?? .finished
            // A waiting reader has seen the buffer empty, so the end is what it gets.
            defer { state.waiter = nil }
            return state.waiter
        }
        guard let waiter else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }

    /// The next element; nil once the queue has finished; throws the error it finished with.
    func next() async throws -> Element? {
        if let ready = state.withLock({ $0.poll() }) { return try ready.get() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<Element?, any Error>? in
                    if let ready = state.poll() { return ready }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            finish(throwing: RPCError(.cancelled, "the call was cancelled"))
        }
    }
}
