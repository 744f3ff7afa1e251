import CoreMetrics
import Logging
import Storage
import Synchronization

/// What a consumer decided about one message.
public enum Disposition: Sendable, Equatable {
    /// Processed: remove it.
    case acknowledge
    /// Not yet: deliver it again after the delay (a downstream is unavailable, say). Counts as a
    /// delivery: a message retried too often goes to the dead letters.
    case retry(after: Duration)
    /// Not now, through no fault of the message (shutting down, waiting for another service):
    /// deliver it again after the delay without counting this delivery.
    case postpone(after: Duration)
    /// It can never be processed: move it to the dead letters with the reason.
    case deadLetter(reason: String)
}

extension Disposition {
    /// What a consumer does with `message` when its own store failed to take it (`error`).
    /// An unavailable store (`isStoreUnavailable`: down, restarting, overloaded, locked) is no
    /// fault of the message: it is postponed, uncounted, however long the outage lasts; counted
    /// retries would dead-letter well-formed messages after a few seconds of it. Any other store
    /// failure may be the message's: it is retried, counted, and on its final delivery
    /// dead-lettered with the store's error as the reason (rather than the broker's "not
    /// acknowledged after N deliveries"), so whoever inspects the dead letter sees why.
    public static func afterStoreFailure(_ error: any Error, of message: ReceivedMessage, retryAfter delay: Duration = .seconds(1)) -> Disposition {
        if isStoreUnavailable(error) { return .postpone(after: delay) }
        if message.isFinalDelivery {
            return .deadLetter(reason: "the store refused it on delivery \(message.deliveryCount) of \(message.maxDeliveries): \(error)")
        }
        return .retry(after: delay)
    }
}

/// A polling consumer: leases messages from a queue, runs the handler for each with at most
/// `concurrency` in flight, keeps each lease alive while its handler runs, and applies the
/// handler's disposition. Runs until its task is cancelled; a handler still running then is
/// cancelled, and a message it did not finish goes back without counting a delivery.
///
/// A handler that must wait for something outside (a drone to be free) does it inside
/// `MessageConsumer.waiting { }`: while it waits its message does not count toward
/// `concurrency` (other messages are taken meanwhile), only toward `maxWaiting`.
public struct MessageConsumer: Sendable {
    public let queue: any MessageQueue
    public let queueName: String
    public let consumerName: String
    public var concurrency = 16
    /// Messages whose handler waits (inside `waiting`) on top of `concurrency`.
    public var maxWaiting = 0
    public var lease: Duration = .seconds(30)
    public var idlePoll: Duration = .milliseconds(100)
    public var logger = Logger(label: "fabrikam.consumer")

    public init(queue: any MessageQueue, queueName: String, consumerName: String) {
        self.queue = queue
        self.queueName = queueName
        self.consumerName = consumerName
    }

    public func run(_ handler: @escaping @Sendable (ReceivedMessage) async -> Disposition) async {
        let inFlight = InFlightCounter()
        // Messages handed out again (a lease ran out, a retry): a rising rate means handlers fail or crash.
        let redeliveries = Counter(label: "fabrikam_queue_redeliveries_total", dimensions: [("queue", queueName)])
        let settled = { (outcome: String) in Counter(label: "fabrikam_queue_settled_total", dimensions: [("queue", queueName), ("outcome", outcome)]) }
        let outcomes = (acknowledged: settled("acknowledged"), retried: settled("retried"), postponed: settled("postponed"), deadLettered: settled("dead_lettered"))
        await withDiscardingTaskGroup { group in
            var wait = Duration.milliseconds(2)
            while !Task.isCancelled {
                let counts = inFlight.counts
                let free = max(0, min(concurrency - counts.working, concurrency + maxWaiting - counts.working - counts.waiting))
                var messages: [ReceivedMessage] = []
                if free > 0 {
                    do {
                        messages = try await queue.receive(from: queueName, consumer: consumerName, maxMessages: free, lease: lease)
                    } catch {
                        logger.warning("receive failed", metadata: ["queue": "\(queueName)", "error": "\(error)"])
                    }
                }
                for message in messages {
                    if message.deliveryCount > 1 { redeliveries.increment() }
                    inFlight.add(working: 1)
                    group.addTask {
                        await ConsumerSlot.$current.withValue(ConsumerSlot(inFlight)) {
                            await process(message, handler, outcomes)
                        }
                        inFlight.add(working: -1)
                    }
                }
                if messages.isEmpty {
                    // Back off while idle (SQLite has no cross-process notification), but look
                    // again soon when we are only waiting for a free slot.
                    try? await Task.sleep(for: free > 0 ? wait : .milliseconds(2))
                    if free > 0 { wait = min(wait * 2, idlePoll) }
                } else {
                    wait = .milliseconds(2)
                }
            }
        }
    }

    private func process(_ message: ReceivedMessage, _ handler: @Sendable (ReceivedMessage) async -> Disposition,
                         _ outcomes: (acknowledged: Counter, retried: Counter, postponed: Counter, deadLettered: Counter)) async {
        let lease = lease
        let queue = queue
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: lease / 3)
                if Task.isCancelled { break }
                try? await queue.extendLease(message, by: lease)
            }
        }
        var disposition = await handler(message)
        heartbeat.cancel()
        if Task.isCancelled, case .retry = disposition {
            // Stopped by our shutdown, not by the message: it goes back uncounted, and at once
            // (the handler's delay was for the attempt the shutdown interrupted), so another
            // consumer can take it over without waiting.
            disposition = .postpone(after: .zero)
        }
        do {
            switch disposition {
            case .acknowledge:
                outcomes.acknowledged.increment()
                try await queue.acknowledge(message)
            case .retry(let delay):
                outcomes.retried.increment()
                try await queue.release(message, after: delay)
            case .postpone(let delay):
                outcomes.postponed.increment()
                try await queue.postpone(message, after: delay)
            case .deadLetter(let reason):
                outcomes.deadLettered.increment()
                logger.warning("dead-lettered", metadata: ["queue": "\(queueName)", "message": "\(message.id)", "reason": "\(reason)"])
                try await queue.deadLetter(message, reason: reason)
            }
        } catch {
            // The lease runs out and the message comes back: at-least-once, nothing lost.
            logger.warning("could not settle message", metadata: ["message": "\(message.id)", "error": "\(error)"])
        }
    }
}

extension MessageConsumer {
    /// Runs `body` (a wait for something outside, such as a free drone) with the current
    /// message counted as waiting rather than working, so the consumer takes other messages
    /// meanwhile (up to its `maxWaiting`). Outside a consumer's handler it just runs `body`.
    public static func waiting<T>(_ body: () async throws -> T) async rethrows -> T {
        guard let slot = ConsumerSlot.current else { return try await body() }
        slot.counter.add(working: -1, waiting: 1)
        defer { slot.counter.add(working: 1, waiting: -1) }
        return try await body()
    }
}

/// The consumer a handler runs under (a task-local), for `MessageConsumer.waiting`.
struct ConsumerSlot: Sendable {
    @TaskLocal static var current: ConsumerSlot?
    let counter: InFlightCounter
    init(_ counter: InFlightCounter) { self.counter = counter }
}

/// Messages a consumer holds: being worked on, and waiting (shared with the tasks that finish them).
final class InFlightCounter: Sendable {
    private let value = Mutex((working: 0, waiting: 0))
    var counts: (working: Int, waiting: Int) { value.withLock { $0 } }
    func add(working: Int = 0, waiting: Int = 0) {
        value.withLock {
            $0.working += working
            $0.waiting += waiting
        }
    }
}
