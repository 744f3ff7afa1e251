internal import CJansson

/// Parses JSON text with jansson (the C library from Debian's libjansson-dev).
///
/// Why jansson: docs/json-parser.md compares it with Foundation's JSONSerialization on the same
/// inputs; jansson parses faster and reports the line and column of syntax errors. Its tree is
/// converted to `JSONValue` once and freed before returning.
public enum JSONParser {
    /// Nesting deeper than this is rejected (the proto3 JSON mapping recurses per level).
    public static let maxDepth = 100

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var error = json_error_t()
        // JSON_DECODE_ANY: any value at top level (the wrappers' JSON form is a bare scalar).
        // JSON_ALLOW_NUL: proto3 strings may contain U+0000.
        // JSON_REJECT_DUPLICATES: a repeated key is an error, not a silent overwrite.
        let flags = JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES
        guard let root = json_loadb(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, Int(flags), &error) else {
            let text = withUnsafeBytes(of: error.text) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            throw JSONDecodingError("invalid JSON at line \(error.line), column \(error.column): \(text)")
        }
        defer { CJansson_decref(root) }
        return try convert(root, depth: 0)
    }

    public static func parse(_ text: String) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0) }
    }

    private static func string(_ pointer: UnsafePointer<CChar>?, length: Int) -> String {
        guard let pointer, length > 0 else { return "" }
        // jansson has already checked that the input is UTF-8.
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    private static func convert(_ value: UnsafeMutablePointer<json_t>, depth: Int) throws -> JSONValue {
        switch CJansson_typeof(value) {
        case Int32(JSON_OBJECT.rawValue):
            guard depth < maxDepth else { throw JSONDecodingError("JSON nested more than \(maxDepth) deep") }
            var members: [JSONMember] = []
            members.reserveCapacity(json_object_size(value))
            var iterator = json_object_iter(value)
            while let current = iterator {
                let key = string(json_object_iter_key(current), length: json_object_iter_key_len(current))
                members.append(JSONMember(key, try convert(json_object_iter_value(current), depth: depth + 1)))
                iterator = json_object_iter_next(value, current)
            }
            return .object(members)
        case Int32(JSON_ARRAY.rawValue):
            guard depth < maxDepth else { throw JSONDecodingError("JSON nested more than \(maxDepth) deep") }
            let count = json_array_size(value)
            var elements: [JSONValue] = []
            elements.reserveCapacity(count)
            for index in 0..<count {
                elements.append(try convert(json_array_get(value, index), depth: depth + 1))
            }
            return .array(elements)
        case Int32(JSON_STRING.rawValue):
            return .string(string(json_string_value(value), length: json_string_length(value)))
        case Int32(JSON_INTEGER.rawValue):
            return .integer(Int64(json_integer_value(value)))
        case Int32(JSON_REAL.rawValue):
            return .number(json_real_value(value))
        case Int32(JSON_TRUE.rawValue):
            return .bool(true)
        case Int32(JSON_FALSE.rawValue):
            return .bool(false)
        default:
            return .null
        }
    }
}
