import ProtobufCodeGen
import ProtobufKit

/// Converts between canonical proto3 JSON and the binary wire format for message types known
/// only from descriptors. Well-known types (Timestamp, Duration, wrappers, Struct, FieldMask,
/// Empty) go through ProtobufKit's own types, so their JSON is exactly what generated code writes.
///
/// ```swift
/// let codec = DynamicCodec(pool: pool)
/// let bytes = try codec.encode(json: try JSONParser.parse(#"{"name":"x"}"#), as: "pkg.Request")
/// let json = try codec.json(from: bytes, as: "pkg.Response")
/// ```
public struct DynamicCodec: Sendable {
    public let pool: DescriptorPool
    public init(pool: DescriptorPool) { self.pool = pool }

    /// Deepest nesting accepted either way, as ProtobufKit's bound.
    static let maxDepth = 100

    // MARK: JSON to binary

    /// The binary encoding of the JSON object `json` as a `type` message.
    ///
    /// - Throws: `JSONDecodingError` whose path names the offending field, in the words of
    ///   ProtobufKit's decoder (`packageInfo.weight: expected a number, got "heavy"`).
    public func encode(json: JSONValue, as type: String, ignoreUnknownFields: Bool = false) throws -> [UInt8] {
        var writer = WireWriter()
        try encodeMessage(json, type: type, into: &writer, depth: 0, ignoreUnknown: ignoreUnknownFields)
        return writer.bytes
    }

    func encodeMessage(_ json: JSONValue, type: String, into writer: inout WireWriter, depth: Int, ignoreUnknown: Bool) throws {
        guard depth < Self.maxDepth else { throw JSONDecodingError("nested more than \(Self.maxDepth) deep") }
        if let wellKnown = WellKnownType.byName[type] {
            writer.bytes += try wellKnown.encode(json)
            return
        }
        if type == "google.protobuf.Any" {
            try encodeAny(json, into: &writer, depth: depth, ignoreUnknown: ignoreUnknown)
            return
        }
        let message = try pool.message(type)
        guard case .object(let members) = json else {
            throw JSONDecodingError("expected an object for \(type), got \(Self.describe(json))")
        }
        var seenFields: Set<Int32> = []
        var seenOneofs: [Int: String] = [:]
        var encodedFields: [(number: Int32, bytes: [UInt8])] = []
        for member in members {
            guard let field = message.fields.first(where: { $0.jsonName == member.key || $0.name == member.key }) else {
                if member.key == "@type" || ignoreUnknown { continue }
                throw JSONDecodingError("unknown field (\(type) has no field named '\(member.key)')").under(member.key)
            }
            do {
                guard seenFields.insert(field.number).inserted else { throw JSONDecodingError("the field is given more than once") }
                if case .null = member.value, !(field.type == .message && field.typeName == "google.protobuf.Value") { continue }
                if let oneof = field.oneofIndex {
                    if let other = seenOneofs[oneof] {
                        throw JSONDecodingError("'\(other)' is already set: only one member of oneof \(message.oneofs[oneof].name) may be")
                    }
                    seenOneofs[oneof] = member.key
                }
                var fieldWriter = WireWriter()
                try encodeField(field, member.value, in: message, into: &fieldWriter, depth: depth, ignoreUnknown: ignoreUnknown)
                encodedFields.append((field.number, fieldWriter.bytes))
            } catch let error as JSONDecodingError {
                throw error.under(member.key)
            }
        }
        // In field-number order, as generated code (protobuf-c) writes them, whatever the JSON's
        // order: the same message gives the same bytes, even inside an Any's payload.
        for (_, bytes) in encodedFields.sorted(by: { $0.number < $1.number }) { writer.bytes += bytes }
    }

    func encodeField(_ field: ProtoField, _ json: JSONValue, in message: ProtoMessage, into writer: inout WireWriter, depth: Int, ignoreUnknown: Bool) throws {
        if field.type == .message, let entry = pool.messages[field.typeName], entry.isMapEntry {
            guard case .object(let members) = json else { throw JSONDecodingError("expected an object (a map), got \(Self.describe(json))") }
            let keyField = entry.fields[0]
            let valueField = entry.fields[1]
            for member in members {
                do {
                    var entryWriter = WireWriter()
                    try encodeSingle(keyField, try Self.mapKeyJSON(member.key, keyField), into: &entryWriter, depth: depth + 1, ignoreUnknown: ignoreUnknown)
                    if case .null = member.value { throw JSONDecodingError("a map value may not be null") }
                    try encodeSingle(valueField, member.value, into: &entryWriter, depth: depth + 1, ignoreUnknown: ignoreUnknown)
                    writer.tag(field.number, 2)
                    writer.lengthDelimited(entryWriter.bytes)
                } catch let error as JSONDecodingError {
                    throw error.under("[\"\(member.key)\"]")
                }
            }
            return
        }
        if field.isRepeated {
            guard case .array(let elements) = json else { throw JSONDecodingError("expected an array, got \(Self.describe(json))") }
            for (index, element) in elements.enumerated() {
                do {
                    if case .null = element, !(field.type == .message && field.typeName == "google.protobuf.Value") {
                        throw JSONDecodingError("an array element may not be null")
                    }
                    try encodeSingle(field, element, into: &writer, depth: depth + 1, ignoreUnknown: ignoreUnknown)
                } catch let error as JSONDecodingError {
                    throw error.under("[\(index)]")
                }
            }
            return
        }
        try encodeSingle(field, json, into: &writer, depth: depth + 1, ignoreUnknown: ignoreUnknown)
    }

    /// A map key (always a JSON string) as the JSON value its key type reads.
    static func mapKeyJSON(_ key: String, _ field: ProtoField) throws -> JSONValue {
        switch field.type {
        case .string: return .string(key)
        case .bool:
            switch key {
            case "true": return .bool(true)
            case "false": return .bool(false)
            default: throw JSONDecodingError("expected a bool map key (true or false), got \"\(key)\"")
            }
        default: return .string(key)
        }
    }

    /// One value of a field (an element of a repeated field, or a singular field's value).
    func encodeSingle(_ field: ProtoField, _ json: JSONValue, into writer: inout WireWriter, depth: Int, ignoreUnknown: Bool) throws {
        let number = field.number
        switch field.type {
        case .double:
            writer.tag(number, 1); writer.fixed64(try Self.double(json).bitPattern)
        case .float:
            let value = try Self.double(json)
            guard value.isNaN || value.isInfinite || abs(value) <= Double(Float.greatestFiniteMagnitude) else {
                throw JSONDecodingError("expected a float, got \(Self.describe(json)) (out of range)")
            }
            writer.tag(number, 5); writer.fixed32(Float(value).bitPattern)
        case .int32:
            writer.tag(number, 0); writer.varint(UInt64(bitPattern: Int64(try Self.integer(json, Int32.self, "an int32"))))
        case .sint32:
            writer.tag(number, 0); writer.varint(WireWriter.zigzag32(try Self.integer(json, Int32.self, "an int32")))
        case .sfixed32:
            writer.tag(number, 5); writer.fixed32(UInt32(bitPattern: try Self.integer(json, Int32.self, "an int32")))
        case .uint32:
            writer.tag(number, 0); writer.varint(UInt64(try Self.integer(json, UInt32.self, "a uint32")))
        case .fixed32:
            writer.tag(number, 5); writer.fixed32(try Self.integer(json, UInt32.self, "a uint32"))
        case .int64:
            writer.tag(number, 0); writer.varint(UInt64(bitPattern: try Self.integer(json, Int64.self, "an int64")))
        case .sint64:
            writer.tag(number, 0); writer.varint(WireWriter.zigzag64(try Self.integer(json, Int64.self, "an int64")))
        case .sfixed64:
            writer.tag(number, 1); writer.fixed64(UInt64(bitPattern: try Self.integer(json, Int64.self, "an int64")))
        case .uint64:
            writer.tag(number, 0); writer.varint(try Self.integer(json, UInt64.self, "a uint64"))
        case .fixed64:
            writer.tag(number, 1); writer.fixed64(try Self.integer(json, UInt64.self, "a uint64"))
        case .bool:
            guard case .bool(let value) = json else { throw JSONDecodingError("expected true or false, got \(Self.describe(json))") }
            writer.tag(number, 0); writer.varint(value ? 1 : 0)
        case .string:
            guard case .string(let value) = json else { throw JSONDecodingError("expected a string, got \(Self.describe(json))") }
            writer.tag(number, 2); writer.lengthDelimited(Array(value.utf8))
        case .bytes:
            guard case .string(let text) = json else { throw JSONDecodingError("expected base64 bytes, got \(Self.describe(json))") }
            guard let value = Self.base64(text) else { throw JSONDecodingError("expected base64 bytes, got \(Self.describe(json))") }
            writer.tag(number, 2); writer.lengthDelimited(value)
        case .enum:
            writer.tag(number, 0); writer.varint(UInt64(bitPattern: Int64(try enumNumber(json, type: field.typeName))))
        case .message:
            var nested = WireWriter()
            try encodeMessage(json, type: field.typeName, into: &nested, depth: depth, ignoreUnknown: ignoreUnknown)
            writer.tag(number, 2); writer.lengthDelimited(nested.bytes)
        case .group:
            throw JSONDecodingError("groups are not supported")
        }
    }

    func enumNumber(_ json: JSONValue, type: String) throws -> Int32 {
        if type == "google.protobuf.NullValue" { return 0 }
        guard let value = pool.enums[type] else { throw JSONDecodingError("enum type \(type) is not described") }
        switch json {
        case .string(let name):
            guard let match = value.values.first(where: { $0.name == name }) else {
                throw JSONDecodingError("\"\(name)\" is not a value of \(type)")
            }
            return match.number
        case .integer:
            return try Self.integer(json, Int32.self, "an enum number")
        default:
            throw JSONDecodingError("expected an enum name or number, got \(Self.describe(json))")
        }
    }

    func encodeAny(_ json: JSONValue, into writer: inout WireWriter, depth: Int, ignoreUnknown: Bool) throws {
        guard case .object(let members) = json else { throw JSONDecodingError("expected an object for google.protobuf.Any, got \(Self.describe(json))") }
        if members.isEmpty { return }
        guard let typeMember = members.first(where: { $0.key == "@type" }), case .string(let url) = typeMember.value else {
            throw JSONDecodingError("a google.protobuf.Any needs \"@type\"")
        }
        let typeName = String(url.split(separator: "/").last ?? "")
        var payload = WireWriter()
        if WellKnownType.isValueFormInAny(typeName) {
            guard let value = members.first(where: { $0.key == "value" })?.value else {
                throw JSONDecodingError("a google.protobuf.Any holding \(typeName) needs \"value\"")
            }
            try encodeMessage(value, type: typeName, into: &payload, depth: depth + 1, ignoreUnknown: ignoreUnknown)
        } else {
            try encodeMessage(.object(members.filter { $0.key != "@type" }), type: typeName, into: &payload, depth: depth + 1, ignoreUnknown: ignoreUnknown)
        }
        writer.tag(1, 2); writer.lengthDelimited(Array(url.utf8))
        writer.tag(2, 2); writer.lengthDelimited(payload.bytes)
    }

    // MARK: JSON value helpers

    static func describe(_ json: JSONValue) -> String {
        switch json {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .integer(let value): return String(value)
        case .number(let value): return String(value)
        case .string(let text): return "\"" + (text.count > 40 ? String(text.prefix(40)) + "..." : text) + "\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    static func double(_ json: JSONValue) throws -> Double {
        switch json {
        case .integer(let value): return Double(value)
        case .number(let value): return value
        case .string(let text):
            switch text {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                if let value = Double(text), !text.isEmpty, !text.hasPrefix(" "), !text.hasSuffix(" ") { return value }
            }
        default: break
        }
        throw JSONDecodingError("expected a number, got \(describe(json))")
    }

    static func integer<T: FixedWidthInteger>(_ json: JSONValue, _ type: T.Type, _ what: String) throws -> T {
        switch json {
        case .integer(let value):
            if let exact = T(exactly: value) { return exact }
        case .number(let value):
            if value.rounded() == value, let exact = T(exactly: value) { return exact }
        case .string(let text):
            if let exact = T(text) { return exact }
            if let value = Double(text), value.rounded() == value, let exact = T(exactly: value) { return exact }
        default: break
        }
        throw JSONDecodingError("expected \(what), got \(describe(json))")
    }

    /// Standard or URL-safe base64, padded or not (proto3 JSON accepts both).
    static func base64(_ text: String) -> [UInt8]? {
        var standard = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while standard.count % 4 != 0 { standard += "=" }
        return Base64.decode(standard)
    }
}
