import CNATS
import Foundation
import Logging
import Messaging
import Synchronization

/// Live announcements over core NATS (no JetStream: nothing is stored), so a follower on any
/// replica hears what any other replica announces.
///
/// Subject per key: `<namespace>.live.<topic>.<key>` (topic and key as subject tokens, like the
/// broker's). A follow is one subscription on its key's subject, so the server sends an
/// announcement only to the processes that have a follower of that key. The namespace must be
/// the broker's, so one NATS server can carry several systems (or tests) side by side; `live` is
/// a subject no JetStream stream of the broker captures.
///
/// Its own connection, with callback subscriptions sharing the library's delivery threads (a
/// thread per open tracking stream would not do).
public final class NATSLiveFeed: LiveFeed {
    public struct Configuration: Sendable {
        /// `nats://host:port`, or several separated by commas.
        public var url: String
        /// The broker's namespace (`[A-Za-z0-9-]`).
        public var namespace = "fabrikam"
        /// What the server requires of a client, if anything.
        public var credentials = NATSCredentials.none
        public init(url: String) { self.url = url }
    }

    public let configuration: Configuration
    let connection: NATSConnection
    let logger: Logger
    let open = OpenCount()
    let flushTimeoutMilliseconds: Int64 = 5_000

    /// Subscriptions the library has not yet reported closed.
    final class OpenCount: Sendable {
        let value = Mutex(0)
    }

    /// What one subscription's callbacks reach through their C closure pointer: retained while
    /// the library may still call them, released by the subscription's completion callback.
    final class FollowContext: @unchecked Sendable {
        let sink: LiveSink
        let open: OpenCount
        init(sink: LiveSink, open: OpenCount) { self.sink = sink; self.open = open }
    }

    /// natsSubscription *, unsubscribed and destroyed once, whoever ends the follow first.
    final class Subscription: @unchecked Sendable {
        private let lock = NSLock()
        private var pointer: OpaquePointer?
        func set(_ subscription: OpaquePointer) { lock.withLock { pointer = subscription } }
        func close() {
            let subscription = lock.withLock { () -> OpaquePointer? in
                defer { pointer = nil }
                return pointer
            }
            guard let subscription else { return }
            natsSubscription_Unsubscribe(subscription)
            natsSubscription_Destroy(subscription)
        }
    }

    /// Connects (blocking work on a thread of its own).
    public init(_ configuration: Configuration, logger: Logger = Logger(label: "fabrikam.live")) async throws {
        self.configuration = configuration
        self.logger = logger
        var options = NATSConnection.Options(url: configuration.url)
        options.credentials = configuration.credentials
        options.name = "fabrikam-\(configuration.namespace)-live"
        options.sharedDeliveryThreads = true
        let connectOptions = options
        connection = try await Blocking.run { try NATSConnection(connectOptions, logger: logger) }
    }

    func subject(topic: String, key: String) -> String {
        "\(configuration.namespace).live.\(JetStreamBroker.token(topic)).\(JetStreamBroker.token(key))"
    }

    /// Publishing appends to the client's outgoing buffer (its own thread writes it to the
    /// socket), so it is called from the caller's task; while the server is away the buffer
    /// holds announcements until it is full, then this throws.
    public func announce(_ payload: [UInt8], topic: String, key: String) async throws {
        let subject = subject(topic: topic, key: key)
        let status = payload.withUnsafeBytes { bytes in
            natsConnection_Publish(connection.connection, subject, bytes.baseAddress, Int32(bytes.count))
        }
        try check(status, "publish on \(subject)")
    }

    public func follow(topic: String, key: String) async throws -> LiveFollower {
        let subject = subject(topic: topic, key: key)
        let subscription = Subscription()
        let follower = LiveFollower { subscription.close() }
        let context = Unmanaged.passRetained(FollowContext(sink: follower.sink, open: open))
        let connection = connection, timeout = flushTimeoutMilliseconds
        try await Blocking.run {
            var pointer: OpaquePointer?
            do {
                try check(natsConnection_Subscribe(&pointer, connection.connection, subject, { _, _, message, closure in
                    guard let message else { return }
                    defer { natsMsg_Destroy(message) }
                    guard let closure else { return }
                    let context = Unmanaged<FollowContext>.fromOpaque(closure).takeUnretainedValue()
                    let length = Int(natsMsg_GetDataLength(message))
                    var payload: [UInt8] = []
                    if length > 0, let data = natsMsg_GetData(message) {
                        payload = data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
                    }
                    context.sink.deliver(payload)
                }, context.toOpaque()), "subscribe to \(subject)")
            } catch {
                context.release()
                throw error
            }
            context.takeUnretainedValue().open.value.withLock { $0 += 1 }
            // From here the library calls the completion callback once the subscription is closed
            // and its handler has returned: only then may the context go.
            let completion = natsSubscription_SetOnCompleteCB(pointer, { closure in
                guard let closure else { return }
                let context = Unmanaged<FollowContext>.fromOpaque(closure).takeRetainedValue()
                context.open.value.withLock { $0 -= 1 }
                context.sink.finish()
            }, context.toOpaque())
            guard completion == NATS_OK else {
                // Without a completion callback there is no safe moment to free the context: keep
                // it (a leak of one small object) rather than risk a handler using it after free.
                context.takeUnretainedValue().open.value.withLock { $0 -= 1 }
                natsSubscription_Unsubscribe(pointer)
                natsSubscription_Destroy(pointer)
                try check(completion, "natsSubscription_SetOnCompleteCB(\(subject))")
                return
            }
            subscription.set(pointer!)
            // The server has the subscription once it answers a flush (it handles a connection's
            // commands in order): only then may the caller read its store, so an announcement of
            // anything committed after that read reaches the follower.
            try check(natsConnection_FlushTimeout(connection.connection, timeout), "flush after subscribing to \(subject)")
        }
        return follower
    }

    public func followerCount() -> Int { open.value.withLock { $0 } }
}
