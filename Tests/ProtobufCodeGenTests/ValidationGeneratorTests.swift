import Foundation
import Testing
import TestSupport
@testable import ProtobufCodeGen

/// The generator compiles protovalidate's standard rules into Swift and refuses, with an error
/// naming the field, what it cannot compile (a custom CEL rule, a rule kind it does not know).
@Suite("Field rules in the generator")
struct ValidationGeneratorTests {
    func generate(_ body: String) throws -> String {
        let directory = try makeTemporaryDirectory("rules")
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            syntax = "proto3";
            package rules;
            import "buf/validate/validate.proto";
            import "google/protobuf/duration.proto";
            \(body)
            """.write(to: directory.appendingPathComponent("rules.proto"), atomically: true, encoding: .utf8)
        let request = try descriptorRequest(for: "rules.proto", includes: [directory.path, "/usr/include"], parameter: "")
        return try SwiftGenerator(request: request).generate()[0].content
    }

    @Test("a custom CEL rule is refused with an error naming the field")
    func celRefused() throws {
        #expect {
            _ = try generate(#"message M { int32 a = 1 [(buf.validate.field).cel = {id: "a.even", expression: "this % 2 == 0"}]; }"#)
        } throws: { error in
            "\(error)".contains("rules.M.a") && "\(error)".contains("custom CEL")
        }
        #expect {
            _ = try generate(#"message M { option (buf.validate.message).cel = {id: "m", expression: "true"}; int32 a = 1; }"#)
        } throws: { error in
            "\(error)".contains("rules.M") && "\(error)".contains("custom CEL")
        }
    }

    @Test("a rule kind the generator does not implement is refused, not silently unchecked")
    func unsupportedRefused() throws {
        #expect {
            _ = try generate(#"message M { string host = 1 [(buf.validate.field).string.hostname = true]; }"#)
        } throws: { error in
            "\(error)".contains("rules.M.host") && "\(error)".contains("string.hostname")
        }
        #expect {
            _ = try generate(#"message M { int32 a = 1 [(buf.validate.field).string.min_len = 1]; }"#)
        } throws: { error in
            "\(error)".contains("rules.M.a") && "\(error)".contains("string rules on a field of type int32")
        }
    }

    @Test("messages get checks when they have rules or reach a message that has; others keep the default")
    func whichMessages() throws {
        let code = try generate("""
            message Leaf { double x = 1 [(buf.validate.field).double.gt = 0]; }
            message Holder { Leaf leaf = 1; }
            message Plain { string s = 1; }
            message Ignoring { Leaf leaf = 1 [(buf.validate.field).ignore = IGNORE_ALWAYS]; }
            """)
        func hasChecks(_ type: String) -> Bool {
            guard let start = code.range(of: "Rules.\(type): ProtobufKit.Message") else { return false }
            let rest = code[start.upperBound...]
            let end = rest.range(of: "\nextension ")?.lowerBound ?? rest.endIndex
            return rest[..<end].contains("func _collectViolations")
        }
        #expect(hasChecks("Leaf"))
        #expect(hasChecks("Holder"))
        #expect(!hasChecks("Plain"))
        #expect(!hasChecks("Ignoring"))
    }
}
