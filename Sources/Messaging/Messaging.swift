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
    /// The engine's handle for settling this delivery, opaque to consumers (SQLite: empty, the
    /// sequence and count identify it; JetStream: the consumer's acknowledgement subject).
    public var receipt: String

    /// This is the message's last chance: if it is not settled now (the consumer crashes, its
    /// lease runs out, or it is released to be tried again), it goes to the dead letters. A
    /// consumer that holds something on the message's behalf gives it back now.
    public var isFinalDelivery: Bool { maxDeliveries > 0 && deliveryCount >= maxDeliveries }

    public init(queue: String, sequence: Int64, id: String, key: String, headers: [String: String], payload: [UInt8], deliveryCount: Int,
                enqueueTime: Double, maxDeliveries: Int = 0, receipt: String = "") {
        self.queue = queue
        self.sequence = sequence
        self.id = id
        self.key = key
        self.headers = headers
        self.payload = payload
        self.deliveryCount = deliveryCount
        self.enqueueTime = enqueueTime
        self.maxDeliveries = maxDeliveries
        self.receipt = receipt
    }
}

/// The result of a send.
public struct SendResult: Sendable, Hashable {
    /// The broker's sequence number of the stored message (the original one for a duplicate).
    public var sequence: Int64
    /// A message with the same id was sent before (within the engine's de-duplication window,
    /// `MessagingGuarantees.deduplicationWindow`): nothing was stored.
    public var duplicate: Bool
    /// For a duplicate, the first message's payload when the engine still has it, which the
    /// producer may want (Ingestion answers a repeated request with what the first one was given).
    /// Best effort: SQLite always has it; JetStream only while the first message is still queued
    /// (a work-queue stream forgets a message once it is settled).
    public var duplicateOf: [UInt8]?

    public init(sequence: Int64, duplicate: Bool, duplicateOf: [UInt8]? = nil) {
        self.sequence = sequence
        self.duplicate = duplicate
        self.duplicateOf = duplicateOf
    }
}

/// A message that could not be processed, and why.
public struct DeadLetter: Sendable, Hashable {
    /// The broker's number for this dead letter (a message dead-lettered twice has two), unique
    /// and increasing within the engine, so a page of dead letters continues "after" the last
    /// one seen (SQLite: the dead-letter row; JetStream: the sequence in the dead-letter stream).
    public var sequence: Int64
    public var queue: String
    public var id: String
    public var key: String
    public var headers: [String: String]
    public var payload: [UInt8]
    public var reason: String
    public var deliveryCount: Int
    public var time: Double

    public init(sequence: Int64, queue: String, id: String, key: String, headers: [String: String], payload: [UInt8], reason: String,
                deliveryCount: Int, time: Double) {
        self.sequence = sequence
        self.queue = queue
        self.id = id
        self.key = key
        self.headers = headers
        self.payload = payload
        self.reason = reason
        self.deliveryCount = deliveryCount
        self.time = time
    }
}

/// A durable work queue with at-least-once delivery: Ingestion to Workflow.
///
/// Engines: `SQLiteBroker` (embedded, one host) and `JetStreamBroker` (module MessagingNATS: a
/// work-queue stream per queue with a durable pull consumer). Where they differ, `guarantees`
/// says so, and docs/services.md has the table. Both promise: at least once; de-duplication by
/// message id; the messages of one key one at a time in the order sent; a delivery limit that
/// ends in a dead letter a person can list and redrive.
public protocol MessageQueue: Sendable {
    /// What this engine promises where engines differ.
    var guarantees: MessagingGuarantees { get }
    /// Stores the message durably (see `guarantees.durableAgainstPowerLoss`); returns once the
    /// engine has it.
    func send(_ message: OutgoingMessage, to queue: String) async throws -> SendResult
    /// Leases up to `maxMessages` ready messages to `consumer` for `lease`. Returns at once (an
    /// empty answer when nothing is ready). JetStream: the lease is the queue's AckWait, fixed
    /// when its consumer is created (by the first `receive`); `consumer` names nothing there
    /// (every replica shares the queue's one durable consumer).
    func receive(from queue: String, consumer: String, maxMessages: Int, lease: Duration) async throws -> [ReceivedMessage]
    /// Done with it: the message is removed. Not fenced: a consumer whose lease ran out may
    /// acknowledge a message another consumer now holds (JetStream removes it; SQLite ignores the
    /// stale acknowledgement). Handlers are idempotent and fence their own effects.
    func acknowledge(_ message: ReceivedMessage) async throws
    /// Not done: hand it out again after `delay`. The delivery counts toward `maxDeliveries`.
    func release(_ message: ReceivedMessage, after delay: Duration) async throws
    /// Not done, through no fault of the message (the consumer is shutting down, or must wait for
    /// something): hand it out again after `delay`, and do not count this delivery.
    func postpone(_ message: ReceivedMessage, after delay: Duration) async throws
    /// Keeps a long-running message leased for another `lease` from now (JetStream: InProgress,
    /// which restarts the consumer's AckWait whatever `lease` says).
    func extendLease(_ message: ReceivedMessage, by lease: Duration) async throws
    /// Moves the message to the queue's dead letters with the reason.
    func deadLetter(_ message: ReceivedMessage, reason: String) async throws
    /// A page of a queue's dead letters, oldest first: those numbered after `sequence` (0: from
    /// the start), of one key if given.
    func deadLetters(of queue: String, key: String?, after sequence: Int64, limit: Int) async throws -> [DeadLetter]
    /// Puts dead letters back on their queue as they were, with a fresh delivery count: those
    /// numbered `sequences`, or all when nil. Returns the message ids put back, in queue order.
    func redrive(_ queue: String, sequences: [Int64]?) async throws -> [String]
    /// Messages waiting or leased in the queue.
    func depth(of queue: String) async throws -> Int
    /// The messages with this key still in the queue (waiting or leased), oldest first: what
    /// is still to be done about one entity (Ingestion reports a delivery not yet scheduled).
    func messages(in queue: String, key: String) async throws -> [QueuedMessage]
}

extension MessageQueue {
    /// The dead letters of a queue, oldest first.
    public func deadLetters(of queue: String) async throws -> [DeadLetter] {
        try await deadLetters(of: queue, key: nil, after: 0, limit: Int.max)
    }

    /// The dead letters of a queue with this key, oldest first.
    public func deadLetters(of queue: String, key: String) async throws -> [DeadLetter] {
        try await deadLetters(of: queue, key: key, after: 0, limit: Int.max)
    }
}

/// Where the engines differ; docs/services.md ("Messaging engines") has the full table.
public struct MessagingGuarantees: Sendable, Hashable {
    /// How long a message id is remembered for de-duplication; nil: as long as the engine keeps
    /// its log (SQLite keeps every id).
    public var deduplicationWindow: Duration?
    /// An acknowledged send survives a power loss (SQLite: fsync'd; nats-server 2.9 writes its
    /// files without fsync on each write).
    public var durableAgainstPowerLoss: Bool
    /// Producers and consumers may run on several hosts.
    public var spansHosts: Bool
    /// A stale acknowledgement (from a consumer whose lease ran out) is ignored.
    public var fencedAcknowledgement: Bool
    /// `QueuedMessage.deliveryCount` and `isLeased` are exact (JetStream: isLeased is estimated
    /// from the consumer's position, deliveryCount unknown).
    public var exactLookups: Bool

    public init(deduplicationWindow: Duration?, durableAgainstPowerLoss: Bool, spansHosts: Bool, fencedAcknowledgement: Bool, exactLookups: Bool) {
        self.deduplicationWindow = deduplicationWindow
        self.durableAgainstPowerLoss = durableAgainstPowerLoss
        self.spansHosts = spansHosts
        self.fencedAcknowledgement = fencedAcknowledgement
        self.exactLookups = exactLookups
    }
}

/// A message still in its queue, as a look-up by key sees it (nothing is leased by looking).
public struct QueuedMessage: Sendable, Hashable {
    public var id: String
    public var key: String
    public var payload: [UInt8]
    /// How many times it has been handed out so far; nil where the engine cannot tell per
    /// message (JetStream).
    public var deliveryCount: Int?
    /// When the producer's send was committed (seconds since 1970).
    public var enqueueTime: Double
    /// A consumer holds it now (SQLite: its lease has not run out; JetStream: the queue's consumer
    /// has handed it out at least once, so a message waiting for redelivery also counts).
    public var isLeased: Bool

    public init(id: String, key: String, payload: [UInt8], deliveryCount: Int?, enqueueTime: Double, isLeased: Bool) {
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
