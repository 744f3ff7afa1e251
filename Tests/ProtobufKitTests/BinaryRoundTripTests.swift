import ProtobufKit
import Testing
import TestMessages

@Suite("Binary encoding through protobuf-c")
struct BinaryRoundTripTests {
    @Test("every field kind survives encode and decode")
    func everyFieldKind() throws {
        let original = fullyPopulated()
        let bytes = try original.serializedBytes()
        #expect(bytes.count == original.serializedSize)
        let decoded = try TestAllTypes(serializedBytes: bytes)
        #expect(decoded == original)
    }

    @Test("an empty message encodes to zero bytes and decodes back")
    func emptyMessage() throws {
        #expect(try TestAllTypes().serializedBytes().isEmpty)
        #expect(try TestAllTypes(serializedBytes: []) == TestAllTypes())
    }

    @Test("each oneof member round-trips and only one is set", arguments: [
        TestAllTypes.Choice.choiceInt32(-1),
        .choiceString("s"),
        .choiceBytes([1, 2]),
        .choiceNestedEnum(.baz),
        .choiceNestedMessage(TestAllTypes.NestedMessage()),
    ])
    func oneofMembers(choice: TestAllTypes.Choice) throws {
        var message = TestAllTypes()
        message.choice = choice
        #expect(try TestAllTypes(serializedBytes: message.serializedBytes()).choice == choice)
    }

    @Test("fields unknown to the reader are kept and re-encoded")
    func unknownFieldsSurvive() throws {
        let original = fullyPopulated()
        // TestEmpty knows no field, so everything arrives as unknown.
        let asEmpty = try TestEmpty(serializedBytes: original.serializedBytes())
        #expect(!asEmpty.unknownFields.isEmpty)
        let reencoded = try asEmpty.serializedBytes()
        #expect(try TestAllTypes(serializedBytes: reencoded) == original)
    }

    @Test("enum values unknown to the schema are kept as .unrecognized")
    func openEnums() throws {
        var message = TestAllTypes()
        message.singularNestedEnum = .unrecognized(1234)
        let decoded = try TestAllTypes(serializedBytes: message.serializedBytes())
        #expect(decoded.singularNestedEnum == .unrecognized(1234))
        #expect(decoded.singularNestedEnum.rawValue == 1234)
        #expect(TestAllTypes.NestedEnum(rawValue: 2) == .bar)
    }

    @Test("recursive messages nest by value")
    func recursion() throws {
        var message = TestAllTypes()
        var level = TestAllTypes()
        for depth in 0..<20 {
            var next = TestAllTypes()
            next.singularInt32 = Int32(depth)
            next.recursive = level
            level = next
        }
        message.recursive = level
        let decoded = try TestAllTypes(serializedBytes: message.serializedBytes())
        #expect(decoded == message)
        // Value semantics: changing the copy leaves the original alone.
        var copy = decoded
        copy.recursive?.recursive?.singularInt32 = 999
        #expect(copy != decoded)
    }

    @Test("maps of every key kind round-trip")
    func maps() throws {
        var maps = TestMapsOnly()
        maps.mapInt32Int32 = [-1: 1, 0: 0]
        maps.mapInt64Int64 = [.min: .max]
        maps.mapUint32Uint32 = [.max: 0]
        maps.mapUint64Uint64 = [.max: 1]
        maps.mapSint32Sint32 = [-3: -3]
        maps.mapSint64Sint64 = [-4: -4]
        maps.mapFixed32Fixed32 = [5: 5]
        maps.mapFixed64Fixed64 = [6: 6]
        maps.mapSfixed32Sfixed32 = [-7: -7]
        maps.mapSfixed64Sfixed64 = [-8: -8]
        maps.mapInt32Float = [1: 0.5]
        maps.mapInt32Double = [2: 0.25]
        maps.mapBoolBool = [true: false, false: true]
        maps.mapStringString = ["k": "v", "": ""]
        #expect(try TestMapsOnly(serializedBytes: maps.serializedBytes()) == maps)
    }

    @Test("Any packs and unpacks")
    func anyPacking() throws {
        let inner = fullyPopulated()
        let any = try WKT.AnyMessage(packing: inner)
        #expect(any.typeUrl == "type.googleapis.com/fabrikam.testing.v1.TestAllTypes")
        #expect(any.isA(TestAllTypes.self))
        #expect(try any.unpack(as: TestAllTypes.self) == inner)
        #expect(throws: ProtobufDecodingError.self) { try any.unpack(as: WKT.Timestamp.self) }
    }

    @Test("decoding many messages reuses no state between calls")
    func repeatedDecodes() throws {
        let bytes = try fullyPopulated().serializedBytes()
        for _ in 0..<200 {
            #expect(try TestAllTypes(serializedBytes: bytes) == fullyPopulated())
        }
    }
}
