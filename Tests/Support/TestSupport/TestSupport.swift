// Helpers shared by the test targets: where the repository is, and running the independent
// tools (protoc, Python's protobuf) that the tests check our output against.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The repository root, found from this file's path (Tests/Support/TestSupport/).
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A program that exited non-zero.
public struct CommandFailure: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public let output: String
    public let errorOutput: String
    public var description: String { "\(command) exited \(status):\n\(output)\n\(errorOutput)" }
}

/// Runs blocking work (a child process, a blocking socket) on a thread of its own, and waits
/// for it without holding a thread. Swift's cooperative pool has one thread per core (two on
/// the CI machine): a test blocked there leaves the servers under test in the same process, and
/// every other test of the run, without threads. In full runs that made 150 ms handlers take
/// seconds, a pipelined 503 come 10 s late, and scripts that talk to an in-process server wait
/// for it while it waited for them.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs a program to completion and returns its standard output; see `runBlocking`. The
/// program runs on a thread of its own (`onOwnThread`).
@discardableResult
public func run(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> Data {
    try await onOwnThread { try runBlocking(executable, arguments, input: input) }
}

/// What a program printed and how it exited.
public struct ProcessOutcome: Sendable {
    public var status: Int32
    public var output: Data
    public var errorOutput: Data
}

/// Runs a program to completion, feeding it `input`, and collects both of its outputs. Both
/// pipes are read while the program runs, so neither can fill up and block it. A program still
/// running after `timeout` gets SIGTERM. `environment` nil: this process's environment.
public func runCollecting(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                          input: Data? = nil, timeout: Duration? = nil) throws -> ProcessOutcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    let errors = Pipe()
    let standardInput = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = standardInput
    try process.run()
    nonisolated(unsafe) var errorData = Data()
    let reader = Thread { errorData = errors.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    if let input { standardInput.fileHandleForWriting.write(input) }
    try? standardInput.fileHandleForWriting.close()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    if let timeout {
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.components.seconds * 1000)), execute: killer)
    }
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    while !reader.isFinished { usleep(1000) }
    return ProcessOutcome(status: process.terminationStatus, output: outputData, errorOutput: errorData)
}

/// Runs a program to completion and returns its standard output; a non-zero exit throws
/// `CommandFailure` with both outputs.
@discardableResult
public func runBlocking(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Data {
    let outcome = try runCollecting(executable, arguments, input: input)
    guard outcome.status == 0 else {
        throw CommandFailure(command: ([executable] + arguments).joined(separator: " "), status: outcome.status,
                             output: String(decoding: outcome.output, as: UTF8.self), errorOutput: String(decoding: outcome.errorOutput, as: UTF8.self))
    }
    return outcome.output
}

/// The Python interpreter of the project's virtualenv (`make deps` creates it).
public var projectPython: String {
    repositoryRoot.appendingPathComponent(".venv/bin/python").path
}

/// protoc's `--descriptor_set_in=...` argument for buf/validate/validate.proto, which the field
/// rules in proto/fabrikam/dronedelivery import: written once per test process from PyPI's
/// protovalidate (tools/protovalidate_descriptor.py), as `make proto` does. Every protoc call on
/// those files passes it.
public let protovalidateDescriptorSetArgument: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("protovalidate-\(UUID().uuidString).binpb").path
    do {
        try runBlocking(projectPython, [repositoryRoot.appendingPathComponent("tools/protovalidate_descriptor.py").path, path])
    } catch {
        fatalError("cannot write buf/validate/validate.proto from the protovalidate package (make deps installs it): \(error)")
    }
    return "--descriptor_set_in=" + path
}()

/// A fresh temporary directory, removed by the caller.
public func makeTemporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Certificates made once per test process by tools/make-certs.sh (with the failure-test extras:
/// a second CA, expired certificates), in a temporary directory.
public enum TestCertificates {
    private static let made = Task<String, Error> {
        let directory = try makeTemporaryDirectory("tls-certs").path
        let script = repositoryRoot.appendingPathComponent("tools/make-certs.sh").path
        let environment = ProcessInfo.processInfo.environment.merging(["FABRIKAM_CERT_TEST_EXTRAS": "1"]) { $1 }
        let outcome = try await onOwnThread { try runCollecting("/bin/bash", [script, directory], environment: environment, timeout: .seconds(60)) }
        guard outcome.status == 0 else {
            throw CommandFailure(command: "make-certs.sh", status: outcome.status, output: String(decoding: outcome.output, as: UTF8.self),
                                 errorOutput: String(decoding: outcome.errorOutput, as: UTF8.self))
        }
        return directory
    }

    /// The directory holding ca.pem, server.pem, client.pem, other-*.pem, expired-*.pem and keys.
    public static func directory() async throws -> String { try await made.value }

    /// The path of `name` (for example "server.pem") in the certificates' directory.
    public static func path(_ name: String) async throws -> String { try await directory() + "/" + name }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes, and says whether it held.
///
/// The bound is generous on purpose: tests run twelve at a time on two cores, where a second is
/// not long for a cancellation to travel. A test asserts the returned value, so a condition that
/// never holds still fails it; only how long the test waits for a healthy answer grows.
public func waitUntil(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now > deadline { return false }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// The NATS server `tools/with-nats.sh` started for this run, which requires a user and password
/// as a production server does: its URL, and the credentials the script wrote (the password in a
/// file, as a mounted Secret would hold it). Nil when the tests run without that script.
public enum TestNATS {
    public static var url: String? { setting("FABRIKAM_TEST_NATS_URL") }
    public static var user: String? { setting("FABRIKAM_TEST_NATS_USER") }
    /// The file holding the password (`FABRIKAM_TEST_NATS_PASSWORD_FILE`).
    public static var passwordFile: String? { setting("FABRIKAM_TEST_NATS_PASSWORD_FILE") }
    /// The password, read from `passwordFile` (one trailing line break dropped).
    public static func password() throws -> String? {
        guard let passwordFile else { return nil }
        var text = try String(contentsOfFile: passwordFile, encoding: .utf8)
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
    /// The environment a service process needs to reach that server (`--broker-user` and the
    /// password file), for tests that start services.
    public static var serviceEnvironment: [String: String] {
        guard let user, let passwordFile else { return [:] }
        return ["FABRIKAM_BROKER_USER": user, "FABRIKAM_BROKER_PASSWORD_FILE": passwordFile]
    }
    private static func setting(_ name: String) -> String? {
        ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Whether nothing is bound to `port` on 127.0.0.1 now (a bind to it succeeds).
public func portIsFree(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A port nothing listens on now, below Linux's ephemeral range (32768-60999): a port in it can
/// be taken, between this check and the bind (or while a server restarts on it), as the local
/// port of some outgoing connection.
public func freePort() throws -> Int {
    for _ in 0..<100 {
        let port = Int.random(in: 12_000...32_000)
        if portIsFree(port) { return port }
    }
    throw NoFreePort()
}

/// No free port was found below the ephemeral range.
public struct NoFreePort: Error, CustomStringConvertible {
    public var description: String { "no free port found on 127.0.0.1 between 12000 and 32000" }
}
