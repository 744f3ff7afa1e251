// Helpers shared by the test targets: where the repository is, and running the independent
// tools (protoc, Python's protobuf) that the tests check our output against.

import Foundation

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

/// Runs a program to completion and returns its standard output.
@discardableResult
public func runBlocking(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    let standardInput = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = standardInput
    try process.run()
    // Read both pipes while the program runs so neither can fill up and block it.
    nonisolated(unsafe) var errorData = Data()
    let reader = Thread { errorData = errors.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    if let input { standardInput.fileHandleForWriting.write(input) }
    try? standardInput.fileHandleForWriting.close()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !reader.isFinished { usleep(1000) }
    guard process.terminationStatus == 0 else {
        throw CommandFailure(command: ([executable] + arguments).joined(separator: " "), status: process.terminationStatus,
                             output: String(decoding: outputData, as: UTF8.self), errorOutput: String(decoding: errorData, as: UTF8.self))
    }
    return outputData
}

/// The Python interpreter of the project's virtualenv (`make deps` creates it).
public var projectPython: String {
    repositoryRoot.appendingPathComponent(".venv/bin/python").path
}

/// A fresh temporary directory, removed by the caller.
public func makeTemporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
