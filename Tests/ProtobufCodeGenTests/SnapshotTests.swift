import Foundation
import Testing
import TestSupport
@testable import ProtobufCodeGen

/// The generated text for small protos is compared with committed snapshots. Set
/// UPDATE_SNAPSHOTS=1 to rewrite them after an intended change, and review the diff.
@Suite("Generator snapshots")
struct SnapshotTests {
    static let snapshots = repositoryRoot.appendingPathComponent("Tests/ProtobufCodeGenTests/Snapshots")

    @Test("snapshot_small.proto")
    func small() throws {
        let request = try descriptorRequest(
            for: "snapshot_small.proto",
            includes: [Self.snapshots.path, repositoryRoot.appendingPathComponent("proto").path, "/usr/include"],
            parameter: "Module=SnapshotSmall,CModule=CSnapshotSmall,Map=google/api/:ProtobufKit:CWellKnownProtos")
        let files = try SwiftGenerator(request: request).generate()
        #expect(files.map(\.name) == ["snapshot_small.pb.swift"])
        let snapshotURL = Self.snapshots.appendingPathComponent("snapshot_small.pb.swift.snapshot")
        if ProcessInfo.processInfo.environment["UPDATE_SNAPSHOTS"] == "1" {
            try files[0].content.write(to: snapshotURL, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: snapshotURL, encoding: .utf8)
        #expect(files[0].content == expected, "generator output changed; rerun with UPDATE_SNAPSHOTS=1 if intended")
    }

    @Test("proto2 files are refused with a clear error")
    func proto2Refused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("p2-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "syntax = \"proto2\"; package p; message M { optional int32 a = 1; }".write(
            to: directory.appendingPathComponent("old.proto"), atomically: true, encoding: .utf8)
        let request = try descriptorRequest(for: "old.proto", includes: [directory.path], parameter: "")
        #expect(throws: GeneratorError.self) { try SwiftGenerator(request: request).generate() }
    }

    @Test("unknown plugin options are refused")
    func badOption() throws {
        let request = CodeGeneratorRequest(filesToGenerate: [], parameter: "Modul=X", files: [])
        #expect(throws: GeneratorError.self) { try SwiftGenerator(request: request) }
    }
}
