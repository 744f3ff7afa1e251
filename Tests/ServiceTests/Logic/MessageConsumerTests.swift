import Foundation
import Messaging
import Synchronization
import Testing
import TestSupport

/// The consumer loop against the real broker: what a shutdown and a wait do to a message.
@Suite("Message consumer: shutdown and waiting")
struct MessageConsumerTests {
    func broker() throws -> SQLiteBroker {
        try SQLiteBroker(path: makeTemporaryDirectory("consumer").appendingPathComponent("b.sqlite").path, maxDeliveries: 3)
    }

    @Test("a shutdown returns the message it was working on at once, without counting a delivery")
    func shutdownDoesNotCountADelivery() async throws {
        let broker = try broker()
        _ = try await broker.send(OutgoingMessage(id: "m", key: "k", payload: [1]), to: "q")
        var consumer = MessageConsumer(queue: broker, queueName: "q", consumerName: "c")
        consumer.lease = .seconds(3600)
        let running = consumer
        let loop = Task {
            await running.run { _ in
                // A handler that cannot finish before the shutdown (a saga waiting to retry, say).
                do { try await Task.sleep(for: .seconds(3600)) } catch { return .retry(after: .seconds(1)) }
                return .acknowledge
            }
        }
        try await waitFor("the message to be taken") { try await broker.messages(in: "q", key: "k").first?.isLeased == true }
        loop.cancel()
        await loop.value
        let message = try #require(try await broker.messages(in: "q", key: "k").first)
        #expect(message.deliveryCount == 0, "the interrupted delivery is not counted")
        #expect(!message.isLeased)
        let again = try #require(try await broker.receive(from: "q", consumer: "c2", maxMessages: 1, lease: .seconds(5)).first, "available at once")
        #expect(again.deliveryCount == 1 && !again.isFinalDelivery)
    }

    @Test("a message whose handler waits (MessageConsumer.waiting) leaves its slot to the next message", .timeLimit(.minutes(1)))
    func waitingFreesTheSlot() async throws {
        let broker = try broker()
        _ = try await broker.send(OutgoingMessage(id: "waits", key: "a", payload: []), to: "q")
        _ = try await broker.send(OutgoingMessage(id: "quick", key: "b", payload: []), to: "q")
        var consumer = MessageConsumer(queue: broker, queueName: "q", consumerName: "c")
        consumer.concurrency = 1
        consumer.maxWaiting = 4
        let released = Atomic(false)
        let running = consumer
        let loop = Task {
            await running.run { message in
                if message.id == "waits" {
                    await MessageConsumer.waiting {
                        while !released.load(ordering: .sequentiallyConsistent) { try? await Task.sleep(for: .milliseconds(5)) }
                    }
                }
                return .acknowledge
            }
        }
        defer { loop.cancel() }
        // With one slot, "quick" is processed only if "waits" gave its slot up while waiting.
        try await waitFor("the second message to be processed while the first waits") { try await broker.messages(in: "q", key: "b").isEmpty }
        #expect(try await broker.messages(in: "q", key: "a").count == 1, "the waiting one is still held")
        released.store(true, ordering: .sequentiallyConsistent)
        try await waitFor("the waiting message to finish") { try await broker.depth(of: "q") == 0 }
    }

    @Test("a message knows its last delivery; an operator lists and redrives dead letters")
    func finalDeliveryAndRedrive() async throws {
        let broker = try broker()
        _ = try await broker.send(OutgoingMessage(id: "poison", key: "k", headers: ["traceparent": "t"], payload: [9]), to: "q")
        var counts: [Int] = []
        for _ in 0..<3 {
            let message = try #require(try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .seconds(60)).first)
            counts.append(message.deliveryCount)
            #expect(message.isFinalDelivery == (message.deliveryCount == 3))
            try await broker.release(message, after: .zero)
        }
        #expect(counts == [1, 2, 3])
        #expect(try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .seconds(60)).isEmpty, "dead-lettered after 3")
        let dead = try await broker.deadLetters(of: "q", key: nil, after: 0, limit: 10)
        #expect(dead.map(\.id) == ["poison"])
        #expect(try await broker.redrive("q", sequences: dead.map(\.sequence)) == ["poison"])
        #expect(try await broker.deadLetters(of: "q").isEmpty)
        let back = try #require(try await broker.receive(from: "q", consumer: "c", maxMessages: 1, lease: .seconds(60)).first)
        #expect(back.deliveryCount == 1 && back.payload == [9] && back.headers["traceparent"] == "t" && back.key == "k", "as it was, with a fresh count")
    }
}
