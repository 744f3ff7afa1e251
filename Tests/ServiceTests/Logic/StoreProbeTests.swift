@testable import ServiceKit
import Synchronization
import Testing

/// The health probe of a service's SQLite files (`StoreProbe`).
@Suite("Store probe")
struct StoreProbeTests {
    /// A check whose answer changes between runs: "busy" the first time, fine after (a write
    /// lock held a moment ago and free now). Counts its runs.
    final class FlakyCheck: Sendable {
        let runs = Atomic<Int>(0)
        func run() -> String? {
            runs.wrappingAdd(1, ordering: .relaxed).oldValue == 0 ? "broker is locked by another connection" : nil
        }
    }

    @Test("the first problem found is the one reported, and each check runs once (an answer that changes between runs stopped Drone Scheduler under load)")
    func answerThatChanges() async {
        let healthy = FlakyCheck()
        _ = healthy.run()  // already past its busy moment
        let flaky = FlakyCheck()
        let problem = await StoreProbe.firstProblem(checks: [{ healthy.run() }, { flaky.run() }])
        #expect(problem == "broker is locked by another connection")
        #expect(healthy.runs.load(ordering: .relaxed) == 2)
        #expect(flaky.runs.load(ordering: .relaxed) == 1)
        #expect(await StoreProbe.firstProblem(checks: []) == nil)
        #expect(await StoreProbe.firstProblem(checks: [{ healthy.run() }]) == nil)
    }
}
