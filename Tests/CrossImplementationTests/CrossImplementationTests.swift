import DroneDeliveryAPI
import Foundation
import GRPCProtos
import ProtobufKit
import Testing
import TestMessages
import TestSupport

/// Our encoder and JSON mapping checked against implementations nobody here wrote: Google's
/// Python protobuf runtime (`tools/crosscheck/crosscheck.py`) and `protoc --decode`.
///
/// For every corpus case (Tests/ProtobufKitTests/Corpus/*.case.json):
/// 1. we parse the case's JSON and write our binary and JSON encodings;
/// 2. Python parses the same JSON and checks that our binary and our JSON decode to the same
///    message, and that our JSON equals its own as parsed JSON; it writes its binary and JSON;
/// 3. we decode Python's binary and JSON and compare with our message;
/// 4. `protoc --decode` prints our bytes and Python's bytes as the same text.
@Suite("Cross-implementation: Python protobuf and protoc", .serialized)
struct CrossImplementationTests {
    static let corpus = repositoryRoot.appendingPathComponent("Tests/ProtobufKitTests/Corpus")
    static let registry = TypeRegistry.wellKnownTypes
        .adding(testMessageTypes)
        .adding(droneDeliveryProtoFiles.flatMap(\.messageTypes))
        .adding(grpcProtoFiles.flatMap(\.messageTypes))

    struct Case {
        let name: String
        let messageName: String
        let type: any Message.Type
        /// The case's JSON, parsed by our parser (Foundation's would lose -0.0 and 64-bit precision).
        let json: JSONValue
    }

    static func loadCases() throws -> [Case] {
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path).filter { $0.hasSuffix(".case.json") }.sorted()
        return try files.map { file in
            let data = [UInt8](try Data(contentsOf: corpus.appendingPathComponent(file)))
            guard case .object(let members) = try JSONParser.parse(data),
                  case .string(let messageName)? = members.first(where: { $0.key == "message" })?.value,
                  let json = members.first(where: { $0.key == "json" })?.value else {
                throw JSONDecodingError("\(file) is not a {\"message\", \"json\"} case")
            }
            let type = try #require(registry.type(named: messageName), "no Swift type for \(messageName)")
            return Case(name: String(file.dropLast(".case.json".count)), messageName: messageName, type: type, json: json)
        }
    }

    @Test("corpus agrees with Python protobuf and protoc in both directions")
    func corpusAgrees() throws {
        let cases = try Self.loadCases()
        #expect(cases.count >= 12)
        let work = try makeTemporaryDirectory("crosscheck")
        defer { try? FileManager.default.removeItem(at: work) }
        let descriptorSet = work.appendingPathComponent("set.pb")
        let protoRoot = repositoryRoot.appendingPathComponent("proto").path
        let protoFiles = try FileManager.default.subpathsOfDirectory(atPath: protoRoot + "/fabrikam").filter { $0.hasSuffix(".proto") }.map { "fabrikam/" + $0 }
        try runBlocking("/usr/bin/protoc", [protovalidateDescriptorSetArgument, "-I", protoRoot, "-I", "/usr/include", "--include_imports", "--descriptor_set_out=" + descriptorSet.path] + protoFiles)

        let encoding = JSONEncodingOptions.defaults { $0.typeRegistry = Self.registry }
        let decoding = JSONDecodingOptions.defaults { $0.typeRegistry = Self.registry }
        var ours: [String: any Message] = [:]
        for testCase in cases {
            let message = try testCase.type.init(jsonValue: testCase.json, options: decoding)
            ours[testCase.name] = message
            try Data(message.serializedBytes()).write(to: work.appendingPathComponent("\(testCase.name).swift.bin"))
            try Data(try message.jsonUTF8Bytes(options: encoding)).write(to: work.appendingPathComponent("\(testCase.name).swift.json"))
            try FileManager.default.copyItem(at: Self.corpus.appendingPathComponent("\(testCase.name).case.json"),
                                             to: work.appendingPathComponent("\(testCase.name).case.json"))
        }

        let script = repositoryRoot.appendingPathComponent("tools/crosscheck/crosscheck.py").path
        let report: String
        do {
            report = String(decoding: try runBlocking(projectPython, [script, "--descriptor-set", descriptorSet.path, "--work", work.path]), as: UTF8.self)
        } catch let failure as CommandFailure {
            Issue.record("Python protobuf disagrees:\n\(failure.output)\(failure.errorOutput)")
            return
        }
        #expect(report.contains("\(cases.count) passed, 0 failed"), "\(report)")

        for testCase in cases {
            let message = try #require(ours[testCase.name])
            // Python's bytes and JSON decode to our message.
            let pythonBytes = [UInt8](try Data(contentsOf: work.appendingPathComponent("\(testCase.name).python.bin")))
            let fromPythonBytes = try testCase.type.init(serializedBytes: pythonBytes, options: BinaryDecodingOptions())
            #expect(sameMessage(message, fromPythonBytes), "\(testCase.name): Python bytes decode differently")
            let pythonJSON = [UInt8](try Data(contentsOf: work.appendingPathComponent("\(testCase.name).python.json")))
            let fromPythonJSON = try testCase.type.init(jsonUTF8Bytes: pythonJSON, options: decoding)
            #expect(sameMessage(message, fromPythonJSON), "\(testCase.name): Python's JSON decodes differently")

            // protoc prints both encodings as the same text.
            let ourText = try runBlocking("/usr/bin/protoc", [protovalidateDescriptorSetArgument, "-I", protoRoot, "-I", "/usr/include", "--decode=\(testCase.messageName)"] + protoFiles,
                                  input: Data(message.serializedBytes()))
            let pythonText = try runBlocking("/usr/bin/protoc", [protovalidateDescriptorSetArgument, "-I", protoRoot, "-I", "/usr/include", "--decode=\(testCase.messageName)"] + protoFiles,
                                     input: Data(pythonBytes))
            let ours = maskingAnyPayloads(String(decoding: ourText, as: UTF8.self))
            let theirs = maskingAnyPayloads(String(decoding: pythonText, as: UTF8.self))
            #expect(ours == theirs, "\(testCase.name): protoc --decode differs:\nours:\n\(ours)\npython:\n\(theirs)")
        }
    }
}

/// Equality across an existential: both are the same generated type with equal fields.
///
/// Two cases need more than `==`: NaN never equals itself, and `google.protobuf.Any` holds opaque
/// bytes that another runtime may encode differently (its map entries in another order) for the
/// same message. Then the messages are compared through their JSON, which unpacks every Any and
/// writes map entries in key order.
func sameMessage(_ lhs: any Message, _ rhs: any Message) -> Bool {
    func open<M: Message>(_ lhs: M) -> Bool {
        guard let rhs = rhs as? M else { return false }
        if rhs == lhs { return true }
        let options = JSONEncodingOptions.defaults { $0.typeRegistry = CrossImplementationTests.registry }
        guard let left = try? lhs.jsonString(options: options), let right = try? rhs.jsonString(options: options) else { return false }
        return left == right
    }
    return open(lhs)
}

/// protoc prints an Any's payload as raw bytes; the payloads are compared as messages by
/// `sameMessage` and by the Python checker, so here they are masked.
func maskingAnyPayloads(_ text: String) -> String {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for index in lines.indices.dropFirst() where lines[index - 1].contains("type_url:") && lines[index].trimmingCharacters(in: .whitespaces).hasPrefix("value: ") {
        lines[index] = "    value: <Any payload, compared as a message>"
    }
    return lines.joined(separator: "\n")
}
