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

/// Runs a program to completion and returns its standard output.
@discardableResult
public func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Data {
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
