import DroneDeliveryAPI
import Foundation
import ProtobufKit
import Testing
import TestSupport

/// The field rules (`buf.validate` in proto/fabrikam/dronedelivery) as protoc-gen-swiftpbc
/// compiles them, against protovalidate's own Python implementation (PyPI's protovalidate,
/// `tools/crosscheck/protovalidate_check.py`): every message of the corpus
/// (Tests/Fixtures/Validation/field-rules.corpus.json, valid and invalid ones, every rule kind the
/// protos use) gets the same violations from both, field paths, rule ids and messages alike, and
/// both find exactly what the case expects.
@Suite("Cross-implementation: field rules against protovalidate (Python)", .serialized)
struct FieldRuleCrossTests {
    static let corpus = repositoryRoot.appendingPathComponent("Tests/Fixtures/Validation/field-rules.corpus.json")
    static let registry = TypeRegistry.wellKnownTypes.adding(droneDeliveryProtoFiles.flatMap(\.messageTypes))

    struct Case {
        let name: String
        let messageName: String
        let json: JSONValue
        /// "field rule_id", sorted.
        let expect: [String]
    }

    struct Violation: Hashable, Comparable, CustomStringConvertible {
        let field: String
        let rule: String
        let message: String
        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.field, lhs.rule, lhs.message) < (rhs.field, rhs.rule, rhs.message) }
        var description: String { "\(field) \(rule): \(message)" }
    }

    static func loadCases() throws -> [Case] {
        guard case .object(let root) = try JSONParser.parse([UInt8](try Data(contentsOf: corpus))),
              case .array(let cases)? = root.first(where: { $0.key == "cases" })?.value else {
            throw CorpusError("\(corpus.path) is not {\"cases\": [...]}")
        }
        return try cases.map { value in
            guard case .object(let members) = value,
                  case .string(let name)? = members.first(where: { $0.key == "name" })?.value,
                  case .string(let messageName)? = members.first(where: { $0.key == "message" })?.value,
                  let json = members.first(where: { $0.key == "json" })?.value,
                  case .array(let expect)? = members.first(where: { $0.key == "expect" })?.value else {
                throw CorpusError("a corpus case lacks name, message, json or expect")
            }
            return Case(name: name, messageName: messageName, json: json,
                        expect: expect.compactMap { if case .string(let text) = $0 { text } else { nil } })
        }
    }

    /// The rule ids the protos use; the corpus must reach every one (so a rule kind added to the
    /// protos needs cases here).
    static let ruleKinds: Set<String> = [
        "required", "string.max_bytes", "string.pattern", "string.email", "string.email_empty",
        "double.gt", "double.gte_lte", "double.finite", "int32.gte", "int32.gte_lte", "int64.gte",
        "enum.defined_only", "enum.not_in", "enum.in", "duration.gt", "duration.gt_lte",
        "repeated.max_items", "message.oneof",
    ]

    @Test("the corpus gets the same violations from our generated checks and from protovalidate")
    func corpusAgrees() throws {
        let cases = try Self.loadCases()
        #expect(cases.count >= 40)
        let work = try makeTemporaryDirectory("field-rules")
        defer { try? FileManager.default.removeItem(at: work) }
        let protoRoot = repositoryRoot.appendingPathComponent("proto").path
        let protoFiles = try FileManager.default.subpathsOfDirectory(atPath: protoRoot + "/fabrikam/dronedelivery").filter { $0.hasSuffix(".proto") }
            .map { "fabrikam/dronedelivery/" + $0 }
        let descriptorSet = work.appendingPathComponent("set.pb")
        try runBlocking("/usr/bin/protoc", [protovalidateDescriptorSetArgument, "-I", protoRoot, "-I", "/usr/include", "--include_imports",
                                            "--descriptor_set_out=" + descriptorSet.path] + protoFiles)
        let output = work.appendingPathComponent("python.json")
        do {
            try runBlocking(projectPython, [repositoryRoot.appendingPathComponent("tools/crosscheck/protovalidate_check.py").path,
                                            "--descriptor-set", descriptorSet.path, "--corpus", Self.corpus.path, "--out", output.path])
        } catch let failure as CommandFailure {
            Issue.record("protovalidate (Python) failed:\n\(failure.output)\(failure.errorOutput)")
            return
        }
        let python = try Self.pythonViolations(output)

        let decoding = JSONDecodingOptions.defaults { $0.typeRegistry = Self.registry }
        var reached: Set<String> = []
        for testCase in cases {
            let type = try #require(Self.registry.type(named: testCase.messageName), "no Swift type for \(testCase.messageName)")
            let message = try type.init(jsonValue: testCase.json, options: decoding)
            let ours = message.validationViolations().map { Violation(field: $0.field, rule: $0.ruleID, message: $0.message) }.sorted()
            let theirs = try #require(python[testCase.name], "\(testCase.name): no answer from Python").sorted()
            #expect(ours == theirs, "\(testCase.name): ours \(ours), protovalidate \(theirs)")
            #expect(ours.map { "\($0.field) \($0.rule)" }.sorted() == testCase.expect, "\(testCase.name): ours \(ours), expected \(testCase.expect)")
            reached.formUnion(ours.map(\.rule))
        }
        #expect(reached == Self.ruleKinds, "rule kinds the corpus reaches: \(reached.sorted()); expected \(Self.ruleKinds.sorted())")
    }

    static func pythonViolations(_ file: URL) throws -> [String: [Violation]] {
        guard case .array(let results) = try JSONParser.parse([UInt8](try Data(contentsOf: file))) else { throw CorpusError("not an array") }
        var byName: [String: [Violation]] = [:]
        for result in results {
            guard case .object(let members) = result,
                  case .string(let name)? = members.first(where: { $0.key == "name" })?.value,
                  case .array(let violations)? = members.first(where: { $0.key == "violations" })?.value else { throw CorpusError("bad result") }
            byName[name] = violations.compactMap { value in
                guard case .object(let fields) = value else { return nil }
                func text(_ key: String) -> String { if case .string(let s)? = fields.first(where: { $0.key == key })?.value { s } else { "" } }
                return Violation(field: text("field"), rule: text("rule"), message: text("message"))
            }
        }
        return byName
    }
}

struct CorpusError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
