import Foundation
import TestSupport
@testable import ProtobufCodeGen

/// protoc's descriptors (with comments) for `file`, as the plugin would receive them.
func descriptorRequest(for file: String, includes: [String], parameter: String) throws -> CodeGeneratorRequest {
    let directory = try makeTemporaryDirectory("descriptors")
    defer { try? FileManager.default.removeItem(at: directory) }
    let output = directory.appendingPathComponent("set.pb")
    try runBlocking("/usr/bin/protoc", [protovalidateDescriptorSetArgument] + includes.map { "-I" + $0 } + ["--include_imports", "--include_source_info",
                                                          "--descriptor_set_out=" + output.path, file])
    return try CodeGeneratorRequest(descriptorSet: [UInt8](try Data(contentsOf: output)), parameter: parameter)
}
