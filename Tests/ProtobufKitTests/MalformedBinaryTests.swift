import ProtobufKit
import Testing
import TestMessages

/// Malformed input must give a clear Swift error, never a crash.
@Suite("Malformed binary input")
struct MalformedBinaryTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let bytes: [UInt8]
        let code: ProtobufDecodingError.Code
        let mentions: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "varint cut off", bytes: [0x08, 0x80], code: .truncated, mentions: "cut off"),
        Case(name: "tag cut off", bytes: [0x80], code: .truncated, mentions: "cut off"),
        Case(name: "length past the end", bytes: [0x72, 0x10, 0x61], code: .truncated, mentions: "runs past the end"),
        Case(name: "fixed64 cut off", bytes: [0x41, 0x01, 0x02], code: .truncated, mentions: "8-byte"),
        Case(name: "fixed32 cut off", bytes: [0x3d, 0x01], code: .truncated, mentions: "4-byte"),
        Case(name: "string field with varint wire type", bytes: [0x70, 0x01], code: .wrongWireType, mentions: "singular_string"),
        Case(name: "int32 field with fixed32 wire type", bytes: [0x0d, 0, 0, 0, 0], code: .wrongWireType, mentions: "singular_int32"),
        Case(name: "invalid wire type 7", bytes: [0x0f], code: .wrongWireType, mentions: "invalid wire type"),
        Case(name: "group wire type", bytes: [0x0b], code: .wrongWireType, mentions: "group"),
        Case(name: "field number zero", bytes: [0x00, 0x01], code: .malformed, mentions: "field number 0"),
        Case(name: "invalid UTF-8 in a string", bytes: [0x72, 0x02, 0xc3, 0x28], code: .invalidUTF8, mentions: "singular_string"),
        Case(name: "varint longer than 10 bytes", bytes: [0x08] + [UInt8](repeating: 0xff, count: 11) + [0x01], code: .malformed, mentions: "longer than 10 bytes"),
        Case(name: "bad varint inside a nested message", bytes: [0x92, 0x01, 0x02, 0x08, 0x80], code: .truncated, mentions: "singular_nested_message"),
    ]

    @Test("gives a clear error", arguments: cases)
    func malformed(_ testCase: Case) throws {
        let error = try #require(throws: ProtobufDecodingError.self) {
            try TestAllTypes(serializedBytes: testCase.bytes)
        }
        #expect(error.code == testCase.code, "\(error)")
        #expect(error.description.contains(testCase.mentions), "\(error)")
    }

    @Test("input over the size limit is rejected before parsing")
    func sizeLimit() throws {
        let bytes = try fullyPopulated().serializedBytes()
        let options = BinaryDecodingOptions.defaults { $0.maxSize = bytes.count - 1 }
        let error = try #require(throws: ProtobufDecodingError.self) {
            try TestAllTypes(serializedBytes: bytes, options: options)
        }
        #expect(error.code == .tooLarge)
    }

    @Test("recursion deeper than 100 levels is refused, not a stack overflow")
    func deepRecursion() throws {
        // field 27 (recursive) wrapping itself 5,000 times: tag 0xda 0x01, then a length.
        var bytes: [UInt8] = []
        for _ in 0..<5_000 {
            var length = bytes.count
            var prefix: [UInt8] = [0xda, 0x01]
            repeat {
                prefix.append(UInt8(length & 0x7f) | (length > 0x7f ? 0x80 : 0))
                length >>= 7
            } while length > 0
            bytes = prefix + bytes
        }
        let error = try #require(throws: ProtobufDecodingError.self) { try TestAllTypes(serializedBytes: bytes) }
        #expect(error.code == .tooDeep)
    }

    @Test("every truncation of a valid message fails cleanly or decodes")
    func everyTruncation() throws {
        let bytes = try fullyPopulated().serializedBytes()
        var failures = 0
        for length in 0..<bytes.count {
            do {
                _ = try TestAllTypes(serializedBytes: bytes[0..<length])
            } catch is ProtobufDecodingError {
                failures += 1
            } catch {
                Issue.record("unexpected error type \(type(of: error)): \(error)")
            }
        }
        #expect(failures > bytes.count / 2)
    }
}
