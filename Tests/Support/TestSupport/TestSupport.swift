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
///
/// Started with posix_spawn, not Foundation's `Process`: `Process.run()` lists /proc/self/fd in
/// the parent on every launch, and a full test run (some 1,300 descriptors open, opened and closed
/// by other tests' threads meanwhile) once crashed inside that listing (a bad pointer in memcpy,
/// DroneCTLTests, 2026-12-05), which ends the whole run. Every descriptor this makes is close-on-exec.
public func runCollecting(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                          input: Data? = nil, timeout: Duration? = nil) throws -> ProcessOutcome {
    var inputPipe: [Int32] = [-1, -1], outputPipe: [Int32] = [-1, -1], errorPipe: [Int32] = [-1, -1]
    defer { for fd in inputPipe + outputPipe + errorPipe where fd >= 0 { close(fd) } }
    // pipe2(O_CLOEXEC) is not in Swift's Glibc module; close-on-exec is set right after. (Foundation's
    // children close every inherited descriptor anyway; this narrows what ours could inherit.)
    for index in 0..<3 {
        let made = index == 0 ? pipe(&inputPipe) : index == 1 ? pipe(&outputPipe) : pipe(&errorPipe)
        guard made == 0 else {
            throw CommandFailure(command: executable, status: -1, output: "", errorOutput: "pipe: \(String(cString: strerror(errno)))")
        }
    }
    for fd in inputPipe + outputPipe + errorPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    // dup2 onto 0, 1 and 2 leaves the copies without close-on-exec; the originals close at exec.
    posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errorPipe[1], 2)
    // The child starts with no signal blocked and every signal's default action: posix_spawn would
    // otherwise pass on the calling thread's mask (the runtime's worker threads block signals,
    // and a child that blocks SIGTERM outlives its timeout) and this process's ignored signals.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t(), everySignal = sigset_t()
    sigemptyset(&noSignals)
    sigfillset(&everySignal)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &everySignal)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { envp?.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = envp.map { envp in posix_spawn(&pid, executable, &actions, &attributes, argv, envp) }
        ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
    guard spawned == 0 else {
        throw CommandFailure(command: executable, status: -1, output: "", errorOutput: "posix_spawn: \(String(cString: strerror(spawned)))")
    }
    // The child's ends are the child's now; ours would keep the pipes from ever ending.
    close(inputPipe[0]); inputPipe[0] = -1
    close(outputPipe[1]); outputPipe[1] = -1
    close(errorPipe[1]); errorPipe[1] = -1

    // The input is written on a thread of its own (a large input would otherwise wait for a child
    // that waits for us to read its output), with SIGPIPE blocked there: a child that exits
    // without reading it all makes the write fail with EPIPE instead of killing the test process.
    let writeEnd = inputPipe[1]
    inputPipe[1] = -1
    let writer = Thread {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        if let input {
            input.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(writeEnd, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
        close(writeEnd)
    }
    writer.stackSize = 1 << 20
    writer.start()

    // Both outputs read until both end; SIGTERM once when the timeout passes.
    let deadline = timeout.map { ContinuousClock.now + $0 }
    var terminated = false
    var collected: [Int32: [UInt8]] = [outputPipe[0]: [], errorPipe[0]: []]
    var open = [outputPipe[0], errorPipe[0]]
    var buffer = [UInt8](repeating: 0, count: 65536)
    while !open.isEmpty {
        var waitMilliseconds: Int32 = -1
        if let deadline, !terminated {
            let left = deadline - ContinuousClock.now
            if left <= .zero {
                kill(pid, SIGTERM)
                terminated = true
            } else {
                waitMilliseconds = Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            }
        }
        var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let ready = poll(&fds, nfds_t(fds.count), waitMilliseconds)
        if ready < 0 && errno == EINTR { continue }
        for entry in fds where entry.revents != 0 {
            let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress!, $0.count) }
            if count > 0 {
                collected[entry.fd]!.append(contentsOf: buffer[0..<count])
            } else if count == 0 || errno != EINTR {
                open.removeAll { $0 == entry.fd }
            }
        }
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    while !writer.isFinished { usleep(1000) }
    // As Foundation's `terminationStatus`: the exit code, or the signal that ended it.
    let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : status & 0x7f
    return ProcessOutcome(status: exitCode, output: Data(collected[outputPipe[0]]!), errorOutput: Data(collected[errorPipe[0]]!))
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
