import Foundation
import Messaging
import MessagingNATS
import Testing
import TestSupport

/// The live feed engines: in-process always; core NATS when FABRIKAM_TEST_NATS_URL names a server
/// (required with FABRIKAM_REQUIRE_ENGINES=1, like the broker contract).
enum FeedEngine: String, Sendable, CustomTestStringConvertible {
    case inProcess, nats

    var testDescription: String { rawValue }

    static var available: [FeedEngine] {
        Engine.available.contains(.jetstream) ? [.inProcess, .nats] : [.inProcess]
    }

    /// A fresh feed that shares nothing with other tests, and a way to open another handle on the
    /// same feed (another replica: for NATS a second connection in the same namespace; in process
    /// there is only the one).
    func open() async throws -> (feed: any LiveFeed, another: @Sendable () async throws -> any LiveFeed) {
        switch self {
        case .inProcess:
            let feed = InProcessLiveFeed()
            return (feed, { feed })
        case .nats:
            guard let url = Engine.natsURL else {
                throw EngineMissing(description: "FABRIKAM_TEST_NATS_URL is not set (FABRIKAM_REQUIRE_ENGINES=1): run the tests through tools/with-nats.sh")
            }
            var configuration = NATSLiveFeed.Configuration(url: url)
            configuration.namespace = "t" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
            configuration.credentials = try NATSCredentials.testServer()
            let fixed = configuration
            let open: @Sendable () async throws -> any LiveFeed = { try await NATSLiveFeed(fixed) }
            return (try await open(), open)
        }
    }
}

/// Reads `count` announcements from `follower` (bounded: fails rather than hangs).
func take(_ count: Int, from follower: LiveFollower, timeout: Duration = .seconds(20)) async throws -> [[UInt8]] {
    try await withThrowingTaskGroup(of: [[UInt8]]?.self) { group in
        group.addTask {
            var got: [[UInt8]] = []
            for await payload in follower {
                got.append(payload)
                if got.count == count { break }
            }
            return got
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let got = first else {
            throw EngineMissing(description: "timed out waiting for \(count) announcements")
        }
        return got
    }
}

@Suite("Live feed contract, on every engine")
struct LiveFeedContractTests {
    @Test("a follower gets the announcements of its topic and key only, in order, including those of another replica", arguments: FeedEngine.available)
    func followsItsKeyInOrder(engine: FeedEngine) async throws {
        let (feed, another) = try await engine.open()
        let otherReplica = try await another()
        let a = try await feed.follow(topic: "tracking", key: "d-1")
        let b = try await feed.follow(topic: "tracking", key: "d-2")
        defer { a.stop(); b.stop() }
        // Announced once follow has returned: every one must arrive (follow, then read the store).
        for index in 1...5 { try await otherReplica.announce([1, UInt8(index)], topic: "tracking", key: "d-1") }
        try await otherReplica.announce([2, 1], topic: "tracking", key: "d-2")
        try await otherReplica.announce([3, 1], topic: "other-topic", key: "d-1")
        try await otherReplica.announce([4, 1], topic: "tracking", key: "d-1.x")
        try await otherReplica.announce([4, 2], topic: "tracking", key: "d")
        // A marker last: had anything of another key or topic reached `a`, it would come before it.
        try await otherReplica.announce([9, 9], topic: "tracking", key: "d-1")
        #expect(try await take(6, from: a) == [[1, 1], [1, 2], [1, 3], [1, 4], [1, 5], [9, 9]])
        try await otherReplica.announce([9, 9], topic: "tracking", key: "d-2")
        #expect(try await take(2, from: b) == [[2, 1], [9, 9]])
    }

    @Test("stop, cancelling the reading task, and releasing the follower each unsubscribe; other followers of the key go on", arguments: FeedEngine.available)
    func endingAFollowUnsubscribes(engine: FeedEngine) async throws {
        let feed = try await engine.open().feed
        let stays = try await feed.follow(topic: "tracking", key: "k")
        defer { stays.stop() }
        let stopped = try await feed.follow(topic: "tracking", key: "k")
        #expect(feed.followerCount() == 2)

        stopped.stop()
        var ok = try await waitUntil { feed.followerCount() == 1 }
        #expect(ok, "stop unsubscribes")
        var after: [[UInt8]] = []
        for await payload in stopped { after.append(payload) }  // ends: the follow is over
        #expect(after.isEmpty)

        // A reader cancelled while it waits.
        let reading = try await feed.follow(topic: "tracking", key: "k")
        let reader = Task { for await _ in reading {} }
        ok = try await waitUntil { feed.followerCount() == 2 }
        #expect(ok)
        reader.cancel()
        _ = await reader.value
        ok = try await waitUntil { feed.followerCount() == 1 }
        #expect(ok, "cancelling the reading task unsubscribes")

        // A follower nobody keeps.
        do { _ = try await feed.follow(topic: "tracking", key: "k") }
        ok = try await waitUntil { feed.followerCount() == 1 }
        #expect(ok, "a released follower unsubscribes")

        // The remaining follower still hears the key: the ends above were its neighbours' only.
        try await feed.announce([7], topic: "tracking", key: "k")
        #expect(try await take(1, from: stays) == [[7]])
    }
}
