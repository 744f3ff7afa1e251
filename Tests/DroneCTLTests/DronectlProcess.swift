#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestSupport

/// Runs the built `dronectl` (as a user would) and collects what it printed and its exit code.
struct Dronectl {
    static let binary = repositoryRoot.appendingPathComponent(".build/debug/dronectl").path

    /// The outcome of one run.
    struct Result: CustomStringConvertible {
        var status: Int32
        var output: String
        var errors: String
        var lines: [String] { output.split(separator: "\n").map(String.init) }
        var description: String { "exit \(status)\nstdout:\n\(output)\nstderr:\n\(errors)" }
    }

    /// Environment for every run: no configuration file of the machine's, unless a test gives one.
    /// FABRIKAM_CONTRACT_RECORD passes through: `make contract-record` records dronectl's calls
    /// as a consumer's.
    var environment: [String: String] = [
        "DRONECTL_CONFIG": "/nonexistent/dronectl-config.json",
        "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        "HOME": NSTemporaryDirectory(),
    ].merging(ProcessInfo.processInfo.environment.filter { $0.key == "FABRIKAM_CONTRACT_RECORD" }) { $1 }

    @discardableResult
    func run(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(60)) throws -> Result {
        let outcome = try runCollecting(Self.binary, arguments, environment: environment, input: input.map { Data($0.utf8) }, timeout: timeout)
        return Result(status: outcome.status, output: String(decoding: outcome.output, as: UTF8.self),
                      errors: String(decoding: outcome.errorOutput, as: UTF8.self))
    }
}

/// A server process started for a test: our interop server, or grpcio's (with or without
/// reflection). Stopped by `stop()`.
final class TestServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    var address: String { "127.0.0.1:\(port)" }

    /// Our interop TestService (with health and reflection v1/v1alpha).
    static func interop() throws -> TestServer {
        try TestServer(executable: repositoryRoot.appendingPathComponent(".build/debug/interop-server").path, arguments: ["--port", "0"])
    }

    /// grpcio's TestService, with grpcio-reflection (v1alpha) or without reflection.
    static func grpcio(reflection: Bool) throws -> TestServer {
        try TestServer(executable: projectPython, arguments: [repositoryRoot.appendingPathComponent("tools/dronectl/grpcio_reflection_server.py").path,
                                                           "--port", "0", "--stubs", try stubs()] + (reflection ? [] : ["--no-reflection"]))
    }

    /// The grpcio stubs, generated once per test run.
    static func stubs() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-grpcio-stubs-\(getpid())").path
        if !FileManager.default.fileExists(atPath: directory + "/grpc/testing/test_pb2_grpc.py") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [repositoryRoot.appendingPathComponent("tools/interop/generate.sh").path, directory]
            process.environment = ProcessInfo.processInfo.environment.merging(["PYTHON": projectPython]) { $1 }
            try process.run()
            process.waitUntilExit()
        }
        return directory
    }

    init(executable: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // `listening 127.0.0.1:PORT` (both servers print it first).
        var text = ""
        let handle = output.fileHandleForReading
        while !text.contains("\n") {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let range = text.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression),
              let port = Int(text[range].split(separator: ":")[1]) else {
            process.terminate()
            throw StartFailure(what: executable, output: text)
        }
        self.port = port
    }

    /// Kills the server (SIGKILL: nothing a test checks depends on a graceful stop, and grpcio's
    /// Python server, started from this process, never acted on SIGTERM: every test waited out
    /// a 5 s grace period) and waits for it with waitpid rather than Process.waitUntilExit, which
    /// spins a run loop on the test's thread and did not return in this test process.
    func stop() {
        let pid = process.processIdentifier
        guard pid > 0, !Self.reaped(pid) else { return }
        kill(pid, SIGKILL)
        while !Self.reaped(pid) { usleep(5_000) }
    }

    /// Whether `pid` has exited: reaped here now, or already reaped (by Foundation).
    static func reaped(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result < 0 && errno == ECHILD)
    }
}

/// A process a test needs (a server, the system) did not start; `output` is what it printed.
struct StartFailure: Error, CustomStringConvertible {
    let what: String
    let output: String
    var description: String { "\(what) did not start:\n\(output)" }
}
