import Foundation
@testable import ProtobufCodeGen

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs a program and returns its standard output; throws with its standard error on failure.
@discardableResult
func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Data {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    let errData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw GeneratorError("\(executable) \(arguments.joined(separator: " ")) failed: \(String(decoding: errData, as: UTF8.self))")
    }
    return outData
}

/// protoc's descriptors (with comments) for `file`, as the plugin would receive them.
func descriptorRequest(for file: String, includes: [String], parameter: String) throws -> CodeGeneratorRequest {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("snapshot-\(UUID().uuidString).pb")
    defer { try? FileManager.default.removeItem(at: output) }
    try run("/usr/bin/protoc", includes.map { "-I" + $0 } + ["--include_imports", "--include_source_info",
                                                          "--descriptor_set_out=" + output.path, file])
    let bytes = [UInt8](try Data(contentsOf: output))
    return try CodeGeneratorRequest(descriptorSet: bytes, parameter: parameter)
}
