import Logging
@testable import ServiceKit
import Synchronization
import Testing

/// FABRIKAM_ENGINE_WAIT_SECONDS: a service whose engine is still starting keeps trying for that
/// long instead of exiting at once; without it the first failure stops the start.
@Suite("Engine wait at start")
struct EngineWaitTests {
    struct Refused: Error, Equatable { let attempt: Int }

    static func configuration(_ value: String?) throws -> Configuration {
        try Configuration(arguments: [], environment: value.map { [EngineWait.variable: $0] } ?? [:], known: ["engine-wait-seconds"])
    }

    @Test("with a wait, an engine that refuses twice and then answers is used; the attempts are counted")
    func retriesUntilReachable() async throws {
        let wait = try EngineWait(Self.configuration("20"))
        let attempts = Atomic<Int>(0)
        let answer = try await wait.retrying("test engine", logger: Logger(label: "test")) {
            let attempt = attempts.add(1, ordering: .relaxed).newValue
            if attempt < 3 { throw Refused(attempt: attempt) }
            return "connected on attempt \(attempt)"
        }
        #expect(answer == "connected on attempt 3")
        #expect(attempts.load(ordering: .relaxed) == 3)
    }

    @Test("without a wait (the default), the first failure is thrown as it came, after one attempt")
    func noWaitByDefault() async throws {
        let wait = try EngineWait(Self.configuration(nil))
        #expect(wait.seconds == 0)
        let attempts = Atomic<Int>(0)
        await #expect(throws: Refused(attempt: 1)) {
            _ = try await wait.retrying("test engine", logger: Logger(label: "test")) { () async throws -> Int in
                throw Refused(attempt: attempts.add(1, ordering: .relaxed).newValue)
            }
        }
        #expect(attempts.load(ordering: .relaxed) == 1)
    }

    @Test("the blocking form (PostgreSQL's start check) names the engine and its last problem when the wait is over")
    func blockingNamesTheProblem() throws {
        let wait = try EngineWait(Self.configuration("0"))
        #expect(throws: EngineUnreachable(description: "PostgreSQL: connection refused")) {
            try wait.blocking("PostgreSQL", logger: Logger(label: "test")) { "connection refused" }
        }
        var checks = 0
        try EngineWait(Self.configuration("20")).blocking("PostgreSQL", logger: Logger(label: "test")) {
            checks += 1
            return checks < 2 ? "the database system is starting up" : nil
        }
        #expect(checks == 2)
    }

    @Test("a negative or malformed wait is a configuration error naming the setting")
    func badSetting() {
        #expect { _ = try EngineWait(Self.configuration("-1")) } throws: { error in
            "\(error)".contains(EngineWait.variable) && "\(error)".contains("-1")
        }
        #expect { _ = try EngineWait(Self.configuration("soon")) } throws: { error in
            "\(error)".contains("soon")
        }
    }
}
