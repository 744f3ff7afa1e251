import Synchronization

/// Fire-and-forget announcements of things already committed elsewhere (a delivery's new tracking
/// event), to whoever follows them right now, on any replica that shares the engine.
///
/// Nothing is stored and nothing is retried: a follower that was not there, fell behind, or lost
/// its connection misses announcements. Followers therefore treat an announcement as a hint and
/// read the truth from their store (Delivery's TrackDelivery numbers events and fills gaps from
/// it). Engines: `InProcessLiveFeed` (one process), `NATSLiveFeed` (core NATS, any host).
public protocol LiveFeed: Sendable {
    /// Hands `payload` to every current follower of (`topic`, `key`), in announcement order per
    /// announcer. Returns once the engine has taken it (not once followers have it).
    func announce(_ payload: [UInt8], topic: String, key: String) async throws
    /// Starts following (`topic`, `key`). Once this returns, every later announcement of that key
    /// (from this or another replica of the engine) reaches the follower, so a caller can follow
    /// first and then read its store without missing what is committed in between.
    func follow(topic: String, key: String) async throws -> LiveFollower
    /// Follows open right now (each unsubscribed once stopped, cancelled or dropped): for metrics
    /// and for tests that check a follow is cleaned up.
    func followerCount() -> Int
}

/// One follow: the announcements of one key, from when the follow started, as an async sequence.
///
/// It ends when `stop()` is called, when the task iterating it is cancelled, or when the follower
/// (and every iterator of it) is released; each of them unsubscribes. At most `bufferLimit`
/// announcements wait for a slow reader; older ones are dropped (the reader fills gaps from its
/// store).
public final class LiveFollower: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    public static let bufferLimit = 1024

    private let announcements: AsyncStream<[UInt8]>
    /// Where the engine puts announcements for this follower.
    public let sink: LiveSink

    /// For engines: a follower whose `cleanup` runs exactly once, however the follow ends.
    public init(cleanup: @escaping @Sendable () -> Void) {
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(Self.bufferLimit))
        continuation.onTermination = { _ in cleanup() }
        announcements = stream
        sink = LiveSink(continuation: continuation)
    }

    /// Ends the follow and unsubscribes (idempotent).
    public func stop() { sink.continuation.finish() }

    deinit { sink.continuation.finish() }

    /// Keeps the follower alive while it is iterated (`for await x in try await feed.follow(…)`
    /// holds nothing else), so the follow ends with the loop, not before it.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let follower: LiveFollower
        var base: AsyncStream<[UInt8]>.Iterator
        public mutating func next() async -> [UInt8]? { await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(follower: self, base: announcements.makeAsyncIterator()) }
}

/// The engine's end of a follow: hands announcements to its reader. Holding it does not keep
/// the follow open.
public struct LiveSink: Sendable {
    let continuation: AsyncStream<[UInt8]>.Continuation
    /// Hands one announcement to the reader (dropped once the follow has ended).
    public func deliver(_ payload: [UInt8]) { continuation.yield(payload) }
    /// Ends the follow from the engine's side (its subscription is gone).
    public func finish() { continuation.finish() }
}

/// Announcements within one process (the embedded engine): every follower of a key in this
/// process gets them; other processes do not (their followers rely on their store re-reads).
public final class InProcessLiveFeed: LiveFeed {
    private struct Registry {
        var next = 0
        /// Sinks only: a follower that is released ends its follow, which removes it here.
        var followers: [String: [Int: LiveSink]] = [:]
        var count: Int { followers.values.reduce(0) { $0 + $1.count } }
    }
    private let registry = Mutex(Registry())

    public init() {}

    static func address(_ topic: String, _ key: String) -> String { "\(topic)\u{0}\(key)" }

    public func announce(_ payload: [UInt8], topic: String, key: String) async throws {
        let targets = registry.withLock { Array(($0.followers[Self.address(topic, key)] ?? [:]).values) }
        for sink in targets { sink.deliver(payload) }
    }

    public func follow(topic: String, key: String) async throws -> LiveFollower {
        let address = Self.address(topic, key)
        let token = registry.withLock { state -> Int in
            state.next += 1
            return state.next
        }
        let follower = LiveFollower { [weak self] in
            self?.registry.withLock { state in
                state.followers[address]?.removeValue(forKey: token)
                if state.followers[address]?.isEmpty == true { state.followers[address] = nil }
            }
        }
        // Registered before returning: an announcement made after `follow` returns reaches it.
        registry.withLock { $0.followers[address, default: [:]][token] = follower.sink }
        return follower
    }

    public func followerCount() -> Int { registry.withLock { $0.count } }
}
