import ProtobufKit
import Testing
import TestMessages

/// What protobuf-c cannot be trusted with: nesting (its unpack recurses on the C stack without
/// a limit), memory (a few input bytes can unpack into large structs), and U+0000 in a string
/// (its strings are NUL-terminated, so such a string would be cut short). Each is refused with
/// an error that says what and where, in both directions.
@Suite("Protobuf input bounds")
struct InputBoundsTests {
    /// `levels` Structs nested through Value.struct_value: {"a": {"a": ... {}}}.
    static func nestedStruct(levels: Int) -> WKT.Struct {
        var inner = WKT.Struct()
        for _ in 0..<levels {
            var value = WKT.Value()
            value.kind = .structValue(inner)
            var outer = WKT.Struct()
            outer.fields = ["a": value]
            inner = outer
        }
        return inner
    }

    @Test("a Struct nested past the limit inside a message that cannot contain itself is refused")
    func structDepthInsideNonRecursiveMessage() throws {
        // Each level is a Struct and a Value (and a map entry): 3 messages per level.
        var holder = Fabrikam.Testing.V1.TestStructHolder()
        holder.data = Self.nestedStruct(levels: 40)
        let bytes = try holder.serializedBytes()
        let error = try #require(throws: ProtobufDecodingError.self) {
            try Fabrikam.Testing.V1.TestStructHolder(serializedBytes: bytes)
        }
        #expect(error.code == .tooDeep, "\(error)")
        #expect(error.description.contains("nested more than 100 deep"), "\(error)")

        // Within the limit it decodes, small or not.
        var shallow = Fabrikam.Testing.V1.TestStructHolder()
        shallow.data = Self.nestedStruct(levels: 30)
        #expect(try Fabrikam.Testing.V1.TestStructHolder(serializedBytes: shallow.serializedBytes()) == shallow)
    }

    @Test("a Struct nested 100,000 deep is refused, not a stack overflow")
    func veryDeepStruct() throws {
        // Built by hand, outermost first: Struct{fields: {"": Value{struct_value: Struct{...}}}}.
        // Sizes are computed innermost first, so the bytes are written in one pass.
        let levels = 100_000
        var structSizes = [0]   // the innermost Struct is empty
        var valueSizes: [Int] = [], entrySizes: [Int] = []
        for _ in 0..<levels {
            let value = 1 + varint(structSizes.last!).count + structSizes.last!   // Value.struct_value = 5
            let entry = 1 + varint(value).count + value                            // FieldsEntry.value = 2
            valueSizes.append(value)
            entrySizes.append(entry)
            structSizes.append(1 + varint(entry).count + entry)                    // Struct.fields = 1
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(structSizes.last!)
        for level in stride(from: levels - 1, through: 0, by: -1) {
            bytes += [0x0a] + varint(entrySizes[level]) + [0x12] + varint(valueSizes[level]) + [0x2a] + varint(structSizes[level])
        }
        let error = try #require(throws: ProtobufDecodingError.self) { try WKT.Struct(serializedBytes: bytes, options: .defaults { $0.maxSize = 1 << 30 }) }
        #expect(error.code == .tooDeep, "\(error)")
    }

    @Test("a string holding U+0000 is refused on decode, naming the field's path")
    func nulOnDecode() throws {
        // TestAllTypes.repeated_nested_message[1].corecursive.singular_string = "ab\0cd"
        let text: [UInt8] = [0x61, 0x62, 0x00, 0x63, 0x64]
        let inner = [0x72, UInt8(text.count)] + text                   // singular_string = 14
        let nested = [0x12, UInt8(inner.count)] + inner                // NestedMessage.corecursive = 2
        let bytes: [UInt8] = [0x82, 0x03, 0x00]                        // repeated_nested_message[0] = {}
            + [0x82, 0x03, UInt8(nested.count)] + nested               // repeated_nested_message[1]
        let error = try #require(throws: ProtobufDecodingError.self) { try TestAllTypes(serializedBytes: bytes) }
        #expect(error.code == .nulCharacter, "\(error)")
        #expect(error.description.contains("repeated_nested_message[1].corecursive.singular_string"), "\(error)")

        // Repeated strings and map keys too.
        let repeated: [UInt8] = [0xe2, 0x02, 0x01, 0x78, 0xe2, 0x02, 0x02, 0x79, 0x00]  // repeated_string = ["x", "y\0"]
        let repeatedError = try #require(throws: ProtobufDecodingError.self) { try TestAllTypes(serializedBytes: repeated) }
        #expect(repeatedError.code == .nulCharacter && repeatedError.description.contains("repeated_string[1]"), "\(repeatedError)")
        let mapKey: [UInt8] = [0xc2, 0x03, 0x05, 0x0a, 0x01, 0x00, 0x10, 0x01]          // map_string_int32 = {"\0": 1}
        let mapError = try #require(throws: ProtobufDecodingError.self) { try TestAllTypes(serializedBytes: mapKey) }
        #expect(mapError.code == .nulCharacter && mapError.description.contains("map_string_int32[0].key"), "\(mapError)")
    }

    @Test("a string holding U+0000 is refused on encode, naming the field, before any byte is written")
    func nulOnEncode() throws {
        var message = TestAllTypes()
        var corecursive = TestAllTypes()
        corecursive.repeatedString = ["fine", "cut\0here"]
        var nested = TestAllTypes.NestedMessage()
        nested.corecursive = corecursive
        message.repeatedNestedMessage = [nested]
        let error = try #require(throws: ProtobufEncodingError.self) { try message.serializedBytes() }
        #expect(error.code == .nulCharacter)
        #expect(error.description.contains("fabrikam.testing.v1.TestAllTypes.repeated_string"), "\(error)")
        var wrote = false
        #expect(throws: ProtobufEncodingError.self) { try message.withSerialization { _, _ in wrote = true } }
        #expect(!wrote)

        // A map value and a oneof member are checked too; strings without U+0000 encode as before.
        var mapped = TestAllTypes()
        mapped.mapInt64String = [1: "a\0"]
        #expect(throws: ProtobufEncodingError.self) { try mapped.serializedBytes() }
        var plain = TestAllTypes()
        plain.singularString = "no NUL here, but U+0001: \u{1}"
        #expect(try TestAllTypes(serializedBytes: plain.serializedBytes()) == plain)
    }

    @Test("JSON with \\u0000 in a string behaves the same once converted to binary")
    func nulFromJSON() throws {
        let message = try TestAllTypes(jsonString: #"{"singularString": "a\u0000b"}"#)
        #expect(message.singularString == "a\u{0}b")  // the JSON mapping itself can carry it
        let error = try #require(throws: ProtobufEncodingError.self) { try message.serializedBytes() }
        #expect(error.description.contains("TestAllTypes.singular_string"), "\(error)")
        // Inside an Any, JSON is converted to binary while it is read: a JSON error naming the field.
        let anyError = try #require(throws: JSONDecodingError.self) {
            try TestAllTypes(jsonString: #"{"any": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x\u0000"}}"#)
        }
        #expect(anyError.description.contains("any") && anyError.description.contains("StringValue.value"), "\(anyError)")
    }

    @Test("the decode arena is bounded: input that unpacks into too much memory is refused")
    func arenaBound() throws {
        // 100,000 empty nested messages: 3 bytes each on the wire, a whole struct each in memory.
        let bytes = [UInt8]((0..<100_000).flatMap { _ in [0x82, 0x03, 0x00] as [UInt8] })
        let options = BinaryDecodingOptions.defaults { $0.maxMemory = 1 << 20 }
        let error = try #require(throws: ProtobufDecodingError.self) { try TestAllTypes(serializedBytes: bytes, options: options) }
        #expect(error.code == .tooLarge, "\(error)")
        #expect(error.description.contains("bytes of memory"), "\(error)")
        // The default limit lets the same input through.
        #expect(try TestAllTypes(serializedBytes: bytes).repeatedNestedMessage.count == 100_000)
    }

    func varint(_ value: Int) -> [UInt8] {
        var value = UInt64(value)
        var bytes: [UInt8] = []
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7f) | 0x80)
            value >>= 7
        }
        return bytes + [UInt8(value)]
    }
}
