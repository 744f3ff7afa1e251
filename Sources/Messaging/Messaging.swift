/// A message as its producer hands it over.
public struct OutgoingMessage: Sendable, Hashable {
    /// Unique per queue or topic; a second send with the same id is a duplicate and stores nothing
    /// (the broker's de-duplication id, like JetStream's `Nats-Msg-Id`).
    public var id: String
    /// Messages with the same non-empty key are delivered one at a time, in the order sent: the
    /// next one is handed out only once the previous one is acknowledged or dead-lettered.
    public var key: String
    /// Trace and correlation ids and other metadata that travel with the message.
    public var headers: [String: String]
    public var payload: [UInt8]

    public init(id: String, key: String = "", headers: [String: String] = [:], payload: [UInt8]) {
        self.id = id
        self.key = key
        self.headers = headers
        self.payload = payload
    }
}

/// A message handed to a consumer under a lease. Until the lease runs out no other consumer gets
/// it; if the consumer neither acknowledges nor releases it in time (it crashed, say), the message
/// is delivered again.
public struct ReceivedMessage: Sendable, Hashable {
    public var queue: String
    public var sequence: Int64
    public var id: String
    public var key: String
    public var headers: [String: String]
    public var payload: [UInt8]
    /// How many times it has been handed out, this time included.
    public var deliveryCount: Int
    /// When the producer's send was committed (seconds since 1970).
    public var enqueueTime: Double
    /// The broker dead-letters a message handed out more often than this without being settled
    /// (0: no limit).
    public var maxDeliveries: Int

    /// This is the message's last chance: if it is not settled now (the consumer crashes, its
    /// lease runs out, or it is released to be tried again), it goes to the dead letters. A
    /// consumer that holds something on the message's behalf gives it back now.
    public var isFinalDelivery: Bool { maxDeliveries > 0 && deliveryCount >= maxDeliveries }

    public init(queue: String, sequence: Int64, id: String, key: String, headers: [String: String], payload: [UInt8], deliveryCount: Int,
                enqueueTime: Double, maxDeliveries: Int = 0) {
        self.queue = queue
        self.sequence = sequence
        self.id = id
        self.key = key
        self.headers = headers
        self.payload = payload
        self.deliveryCount = deliveryCount
        self.enqueueTime = enqueueTime
        self.maxDeliveries = maxDeliveries
    }
}

/// The result of a send.
public struct SendResult: Sendable, Hashable {
    /// The broker's sequence number of the stored message (the original one for a duplicate).
    public var sequence: Int64
    /// Set when a message with the same id was sent before: its payload, which the producer may
    /// need (Ingestion answers a repeated request with the delivery id it gave the first time).
    public var duplicateOf: [UInt8]?
}

/// A message that could not be processed, and why.
public struct DeadLetter: Sendable, Hashable {
    /// The broker's number for this dead letter (a message dead-lettered twice has two).
    public var sequence: Int64
    public var queue: String
    public var id: String
    public var key: String
    public var headers: [String: String]
    public var payload: [UInt8]
    public var reason: String
    public var deliveryCount: Int
    public var time: Double
}

/// A durable work queue with at-least-once delivery: Ingestion to Workflow.
///
/// The embedded implementation is `SQLiteBroker`; a broker such as NATS JetStream (a work-queue
/// stream with a durable pull consumer, `Nats-Msg-Id` de-duplication, AckWait as the lease and
/// MaxDeliver with an advisory for dead letters) can implement the same protocol.
public protocol MessageQueue: Sendable {
    /// Stores the message durably; returns once it is committed.
    func send(_ message: OutgoingMessage, to queue: String) async throws -> SendResult
    /// Leases up to `maxMessages` ready messages to `consumer` for `lease`.
    func receive(from queue: String, consumer: String, maxMessages: Int, lease: Duration) async throws -> [ReceivedMessage]
    /// Done with it: the message is removed. False if the lease had already run out and the
    /// message went to someone else.
    @discardableResult
    func acknowledge(_ message: ReceivedMessage) async throws -> Bool
    /// Not done: hand it out again after `delay`. The delivery counts toward `maxDeliveries`.
    func release(_ message: ReceivedMessage, after delay: Duration) async throws
    /// Not done, through no fault of the message (the consumer is shutting down, or must wait for
    /// something): hand it out again after `delay`, and do not count this delivery.
    func postpone(_ message: ReceivedMessage, after delay: Duration) async throws
    /// Keeps a long-running message leased for another `lease` from now.
    func extendLease(_ message: ReceivedMessage, by lease: Duration) async throws
    /// Moves the message to the queue's dead letters with the reason.
    func deadLetter(_ message: ReceivedMessage, reason: String) async throws
    /// The dead letters of a queue, oldest first.
    func deadLetters(of queue: String) async throws -> [DeadLetter]
    /// A page of a queue's dead letters, oldest first: those after `sequence`, of one key if given.
    func deadLetters(of queue: String, key: String?, after sequence: Int64, limit: Int) async throws -> [DeadLetter]
    /// Puts dead letters back on their queue as they were, with a fresh delivery count: those
    /// numbered `sequences`, or all when nil. Returns the message ids put back, in queue order.
    func redrive(_ queue: String, sequences: [Int64]?) async throws -> [String]
    /// Messages waiting or leased in the queue.
    func depth(of queue: String) async throws -> Int
    /// The messages with this key still in the queue (waiting or leased), oldest first: what
    /// is still to be done about one entity (Ingestion reports a delivery not yet scheduled).
    func messages(in queue: String, key: String) async throws -> [QueuedMessage]
    /// The dead letters of a queue with this key, oldest first.
    func deadLetters(of queue: String, key: String) async throws -> [DeadLetter]
}

/// A message still in its queue, as a look-up by key sees it (nothing is leased by looking).
public struct QueuedMessage: Sendable, Hashable {
    public var id: String
    public var key: String
    public var payload: [UInt8]
    /// How many times it has been handed out so far.
    public var deliveryCount: Int
    /// When the producer's send was committed (seconds since 1970).
    public var enqueueTime: Double
    /// A consumer holds it now (its lease has not run out).
    public var isLeased: Bool

    public init(id: String, key: String, payload: [UInt8], deliveryCount: Int, enqueueTime: Double, isLeased: Bool) {
        self.id = id
        self.key = key
        self.payload = payload
        self.deliveryCount = deliveryCount
        self.enqueueTime = enqueueTime
        self.isLeased = isLeased
    }
}

/// A durable event stream with durable subscriber groups: Delivery to Delivery History and others.
/// Each group gets every event at least once, through a queue of its own; a group that subscribes
/// later starts from the first retained event (JetStream's DeliverAll).
public protocol EventStream: Sendable {
    /// Stores the event and fans it out to every subscribed group.
    func publish(_ event: OutgoingMessage, to topic: String) async throws -> SendResult
    /// Creates (or finds) the durable group and returns the queue its events arrive on.
    func subscribe(to topic: String, group: String) async throws -> String
}

/// Header names used across services.
public enum MessageHeader {
    public static let traceparent = "traceparent"
    public static let tracestate = "tracestate"
    public static let correlationID = "correlation-id"
    public static let contentType = "content-type"
}
