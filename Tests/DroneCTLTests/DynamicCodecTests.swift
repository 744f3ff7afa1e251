import DroneCTLCommands
import DynamicProtobuf
import Foundation
import ProtobufKit
import TestMessages
import Testing
import TestSupport

/// The dynamic codec (what `dronectl call` uses for types it learns by reflection) against the
/// generated code for the same types: every JSON case of ProtobufKit's corpus must give the
/// same bytes and the same JSON either way.
@Suite("Dynamic codec")
struct DynamicCodecTests {
    /// The test messages, the well-known types and every file of the services (the corpus has
    /// domain cases too).
    static let pool: DescriptorPool = {
        try! DescriptorPool(generated: [Fabrikam.Testing.V1.TestMessagesProtoFile.metadata] + ProtobufKit.wellKnownFiles + GeneratedCommands.files)
    }()
    static let registry = TypeRegistry(testMessageTypes)
        .adding(ProtobufKit.wellKnownFiles.flatMap(\.messageTypes))
        .adding(GeneratedCommands.files.flatMap(\.messageTypes))

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let message: String
        let json: [UInt8]
        var testDescription: String { name }
    }

    static let corpus: [Case] = {
        let folder = repositoryRoot.appendingPathComponent("Tests/ProtobufKitTests/Corpus")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path))?.filter { $0.hasSuffix(".case.json") }.sorted() ?? []
        return names.compactMap { name in
            guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path),
                  case .object(let members) = try? JSONParser.parse([UInt8](data)),
                  case .string(let message)? = members.first(where: { $0.key == "message" })?.value,
                  let json = members.first(where: { $0.key == "json" })?.value else { return nil }
            var writer = JSONWriter()
            writer.value(json)
            return Case(name: name, message: message, json: writer.bytes)
        }
    }()

    @Test("the corpus is there")
    func corpusIsThere() {
        #expect(Self.corpus.count >= 15)
    }

    /// Decodes `json` with the generated type named `message`, returning its bytes and canonical JSON.
    static func generated(_ message: String, json: [UInt8], options: JSONEncodingOptions) throws -> (bytes: [UInt8], json: [UInt8]) {
        let type = try #require(registry.type(named: message))
        return try roundTrip(type, json, options)
    }

    static func roundTrip<M: ProtobufKit.Message>(_ type: M.Type, _ json: [UInt8], _ options: JSONEncodingOptions) throws -> (bytes: [UInt8], json: [UInt8]) {
        let message = try M(jsonUTF8Bytes: json, options: .defaults { $0.typeRegistry = registry })
        var options = options
        options.typeRegistry = registry
        return (try message.serializedBytes(), try message.jsonUTF8Bytes(options: options))
    }

    /// What the generated type reads from `bytes`, written as canonical JSON (map entries by
    /// key, so the order the dynamic encoder wrote fields or map entries in does not matter).
    static func readBack<M: ProtobufKit.Message>(_ type: M.Type, _ bytes: [UInt8]) throws -> [UInt8] {
        var options = JSONEncodingOptions()
        options.typeRegistry = registry
        return try M(serializedBytes: bytes).jsonUTF8Bytes(options: options)
    }

    @Test("binary to JSON: the same text as generated code", arguments: corpus)
    func jsonMatchesGenerated(_ entry: Case) throws {
        let codec = DynamicCodec(pool: Self.pool)
        for options in [JSONEncodingOptions(), .defaults { $0.alwaysPrintFieldsWithNoPresence = true }, .defaults { $0.preserveProtoFieldNames = true }] {
            let expected = try Self.generated(entry.message, json: entry.json, options: options)
            let dynamic = try codec.json(from: expected.bytes, as: entry.message, options: options)
            #expect(String(decoding: dynamic, as: UTF8.self) == String(decoding: expected.json, as: UTF8.self))
        }
    }

    @Test("JSON to binary: bytes the generated type reads back to the same message", arguments: corpus)
    func bytesMatchGenerated(_ entry: Case) throws {
        let codec = DynamicCodec(pool: Self.pool)
        let expected = try Self.generated(entry.message, json: entry.json, options: JSONEncodingOptions())
        let dynamicBytes = try codec.encode(json: try JSONParser.parse(entry.json), as: entry.message)
        let type = try #require(Self.registry.type(named: entry.message))
        #expect(String(decoding: try Self.readBack(type, dynamicBytes), as: UTF8.self) == String(decoding: expected.json, as: UTF8.self))
    }

    @Test("errors name the field's path, as the generated decoder does")
    func errorPaths() throws {
        let codec = DynamicCodec(pool: Self.pool)
        let cases: [(String, String)] = [
            (#"{"singularInt32": "x"}"#, "singularInt32: expected an int32, got \"x\""),
            (#"{"singularNestedMessage": {"value": true}}"#, "singularNestedMessage.value: expected an int32, got true"),
            (#"{"repeatedString": ["a", 3]}"#, "repeatedString[1]: expected a string, got 3"),
            (#"{"nope": 1}"#, "nope: unknown field (fabrikam.testing.v1.TestAllTypes has no field named 'nope')"),
            (#"{"singularNestedEnum": "NOT_A_VALUE"}"#, "singularNestedEnum: \"NOT_A_VALUE\" is not a value of fabrikam.testing.v1.TestAllTypes.NestedEnum"),
        ]
        for (json, message) in cases {
            #expect(throws: JSONDecodingError.self) { try codec.encode(json: try JSONParser.parse(json), as: "fabrikam.testing.v1.TestAllTypes") }
            do {
                _ = try codec.encode(json: try JSONParser.parse(json), as: "fabrikam.testing.v1.TestAllTypes")
            } catch let error as JSONDecodingError {
                #expect(error.description == message)
            }
        }
    }

    @Test("a raw message carries its bytes through protobuf-c unchanged")
    func rawMessageCarriesBytes() throws {
        let expected = try Self.generated("fabrikam.testing.v1.TestAllTypes",
                                          json: Self.corpus.first { $0.name == "repeated.case.json" }!.json, options: JSONEncodingOptions())
        let raw = try RawMessage(encoded: expected.bytes)
        // Through protobuf-c both ways, as the RPC runtime sends and receives it.
        let sent = try raw.serializedBytes()
        #expect(sent == expected.bytes)
        let received = try RawMessage(serializedBytes: sent)
        #expect(received.encoded == expected.bytes)
    }

    @Test("malformed bytes are refused with a reason")
    func malformedBytes() {
        let codec = DynamicCodec(pool: Self.pool)
        #expect(throws: DynamicCodecError.self) { try codec.json(from: [0x0A, 0x05, 0x01], as: "fabrikam.testing.v1.TestAllTypes") }
        #expect(throws: (any Error).self) { try RawMessage(encoded: [0x0A, 0x05, 0x01]) }
    }
}
