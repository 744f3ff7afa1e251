import Logging
import Synchronization

/// What a consumer decided about one message.
public enum Disposition: Sendable, Equatable {
    /// Processed: remove it.
    case acknowledge
    /// Not yet: deliver it again after the delay (a downstream is unavailable, say).
    case retry(after: Duration)
    /// It can never be processed: move it to the dead letters with the reason.
    case deadLetter(reason: String)
}

/// A polling consumer: leases messages from a queue, runs the handler for each with at most
/// `concurrency` in flight, keeps each lease alive while its handler runs, and applies the
/// handler's disposition. Runs until its task is cancelled.
public struct MessageConsumer: Sendable {
    public let queue: any MessageQueue
    public let queueName: String
    public let consumerName: String
    public var concurrency = 16
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
        await withDiscardingTaskGroup { group in
            var wait = Duration.milliseconds(2)
            while !Task.isCancelled {
                let free = concurrency - inFlight.count
                var messages: [ReceivedMessage] = []
                if free > 0 {
                    do {
                        messages = try await queue.receive(from: queueName, consumer: consumerName, maxMessages: free, lease: lease)
                    } catch {
                        logger.warning("receive failed", metadata: ["queue": "\(queueName)", "error": "\(error)"])
                    }
                }
                for message in messages {
                    inFlight.add(1)
                    group.addTask {
                        await process(message, handler)
                        inFlight.add(-1)
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

    private func process(_ message: ReceivedMessage, _ handler: @Sendable (ReceivedMessage) async -> Disposition) async {
        let lease = lease
        let queue = queue
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: lease / 3)
                if Task.isCancelled { break }
                try? await queue.extendLease(message, by: lease)
            }
        }
        let disposition = await handler(message)
        heartbeat.cancel()
        do {
            switch disposition {
            case .acknowledge: try await queue.acknowledge(message)
            case .retry(let delay): try await queue.release(message, after: delay)
            case .deadLetter(let reason):
                logger.warning("dead-lettered", metadata: ["queue": "\(queueName)", "message": "\(message.id)", "reason": "\(reason)"])
                try await queue.deadLetter(message, reason: reason)
            }
        } catch {
            // The lease runs out and the message comes back: at-least-once, nothing lost.
            logger.warning("could not settle message", metadata: ["message": "\(message.id)", "error": "\(error)"])
        }
    }
}

/// Messages a consumer is working on (shared with the tasks that finish them).
private final class InFlightCounter: Sendable {
    private let value = Mutex(0)
    var count: Int { value.withLock { $0 } }
    func add(_ delta: Int) { value.withLock { $0 += delta } }
}
