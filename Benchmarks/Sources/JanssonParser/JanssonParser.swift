// jansson's parse converted to the same JSONValue tree the project's scanner produces, so the
// two parsers are compared doing the same job.
import CJansson
import ProtobufKit

public enum JanssonParser {
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var error = json_error_t()
        let flags = JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES
        let root = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { json_loadb($0.baseAddress, $0.count, Int(flags), &error) }
        }
        guard let root else { throw JSONDecodingError("invalid JSON at line \(error.line), column \(error.column)") }
        defer { CJansson_decref(root) }
        return convert(root)
    }

    static func string(_ pointer: UnsafePointer<CChar>?, _ length: Int) -> String {
        guard let pointer, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    static func convert(_ value: UnsafeMutablePointer<json_t>) -> JSONValue {
        switch CJansson_typeof(value) {
        case Int32(JSON_OBJECT.rawValue):
            var members: [JSONMember] = []
            members.reserveCapacity(json_object_size(value))
            var iterator = json_object_iter(value)
            while let current = iterator {
                members.append(JSONMember(string(json_object_iter_key(current), json_object_iter_key_len(current)),
                                          convert(json_object_iter_value(current))))
                iterator = json_object_iter_next(value, current)
            }
            return .object(members)
        case Int32(JSON_ARRAY.rawValue):
            return .array((0..<json_array_size(value)).map { convert(json_array_get(value, $0)) })
        case Int32(JSON_STRING.rawValue):
            return .string(string(json_string_value(value), json_string_length(value)))
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
