import Foundation
import Testing
import TestSupport

/// `runCollecting`, the launcher every dronectl, protoc and Python call of the tests goes through
/// (TestSupport): a real /bin/sh child each time.
@Suite("Running a program and collecting its outputs")
struct RunCollectingTests {
    @Test("input reaches the child, and both outputs come back whole, each larger than a pipe holds")
    func inputAndBothOutputs() throws {
        // 200,000 bytes to each output, alternating, before the input is even read: a launcher
        // that read one pipe to its end before the other would wait for ever on the full one.
        let script = "head -c 200000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2; cat"
        let outcome = try runCollecting("/bin/sh", ["-c", script], input: Data("the input\n".utf8), timeout: .seconds(60))
        #expect(outcome.status == 0)
        #expect(outcome.output.count == 200_000 + 10)
        #expect(outcome.output.suffix(10) == Data("the input\n".utf8))
        #expect(outcome.errorOutput.count == 200_000)
        #expect(outcome.errorOutput.allSatisfy { $0 == UInt8(ascii: "e") })
    }

    @Test("the exit code, the environment given instead of this process's, and the arguments")
    func exitCodeEnvironmentArguments() throws {
        let outcome = try runCollecting("/bin/sh", ["-c", "printf '%s|%s|%s' \"$ONLY\" \"${HOME:-unset}\" \"$1\"; exit 7", "sh", "first argument"],
                                        environment: ["ONLY": "given"])
        #expect(outcome.status == 7)
        #expect(String(decoding: outcome.output, as: UTF8.self) == "given|unset|first argument")
    }

    @Test("a child past its timeout gets SIGTERM, and the outcome names the signal")
    func timeout() throws {
        let outcome = try runCollecting("/bin/sh", ["-c", "echo started; exec sleep 30"], timeout: .milliseconds(300))
        #expect(outcome.status == SIGTERM)
        #expect(String(decoding: outcome.output, as: UTF8.self) == "started\n")
    }

    @Test("a child that exits without reading its input does not take the test process with it (SIGPIPE)")
    func unreadInput() throws {
        let outcome = try runCollecting("/bin/sh", ["-c", "exit 3"], input: Data(repeating: 0x61, count: 1 << 20), timeout: .seconds(60))
        #expect(outcome.status == 3)
    }

}
