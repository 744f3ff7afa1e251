import ProtobufKit
import Synchronization

/// A bulkhead: at most `maxConcurrent` calls to one downstream at a time, and at most `maxQueued`
/// waiting; beyond that calls fail at once with RESOURCE_EXHAUSTED, so one slow downstream cannot
/// take every task of its caller.
public final class Bulkhead: Sendable {
    public let name: String
    public let maxConcurrent: Int
    public let maxQueued: Int
    private let state = Mutex<(running: Int, waiting: [UInt64: CheckedContinuation<Void, Error>], next: UInt64)>((0, [:], 0))

    public init(name: String, maxConcurrent: Int, maxQueued: Int = 0) {
        self.name = name
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
    }

    /// Calls running now.
    public var running: Int { state.withLock { $0.running } }

    public func run<Result>(_ body: () async throws -> Result) async throws -> Result {
        try await acquire()
        defer { release() }
        return try await body()
    }

    func acquire() async throws {
        enum Decision { case go, wait, refuse }
        let id = state.withLock { value -> UInt64 in
            value.next += 1
            return value.next
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let decision = state.withLock { value -> Decision in
                    if value.running < maxConcurrent {
                        value.running += 1
                        return .go
                    }
                    if value.waiting.count < maxQueued {
                        value.waiting[id] = continuation
                        return .wait
                    }
                    return .refuse
                }
                switch decision {
                case .go: continuation.resume()
                case .wait: break
                case .refuse: continuation.resume(throwing: RPCError(.resourceExhausted, "bulkhead \(name) is full (\(maxConcurrent) running, \(maxQueued) waiting)"))
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiting.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    func release() {
        let next = state.withLock { value -> CheckedContinuation<Void, Error>? in
            if let (id, waiter) = value.waiting.min(by: { $0.key < $1.key }) {
                value.waiting[id] = nil
                return waiter  // the slot passes straight to the next waiter
            }
            value.running -= 1
            return nil
        }
        next?.resume()
    }
}

/// Puts every call of a client behind a bulkhead.
public struct BulkheadInterceptor: ClientInterceptor {
    public let bulkhead: Bulkhead
    public init(_ bulkhead: Bulkhead) { self.bulkhead = bulkhead }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        try await bulkhead.run { try await next(options) }
    }
}
