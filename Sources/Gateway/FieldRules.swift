internal import CProtobufC
internal import CWellKnownProtos

/// The field rules (protovalidate's `buf.validate` options) of a message, read at run time from
/// the FileDescriptorProtos that generated code embeds, the same bytes protoc-gen-swiftpbc
/// compiled into the checks the upstream clients and the services run. The gateway needs them
/// for one thing: the OpenAPI document says what a request must satisfy, so a request valid by
/// the document is not refused by a field rule (issue 14, item 7).
///
/// Only what JSON Schema can say is kept; the generator refuses rules it does not support, so an
/// option it compiled is one of these. Lengths and ranges keep protovalidate's meaning.
public struct FieldRules: Sendable {
    public var required = false
    /// `IGNORE_IF_ZERO_VALUE`: the rules hold only for a value that is not the zero value.
    public var ignoreIfZero = false
    /// `IGNORE_ALWAYS`: no rule is checked.
    public var ignoreAlways = false
    public var string: StringRules?
    public var number: NumberRules?
    public var enumeration: EnumRules?
    public var repeated: RepeatedRules?
    public var duration: DurationRules?

    public struct StringRules: Sendable {
        public var const: String?
        public var len: UInt64?
        public var minLen: UInt64?
        public var maxLen: UInt64?
        /// UTF-8 byte counts: JSON Schema counts characters, so the document carries them as
        /// `maxLength` (a character is at least one byte) and says the byte limit in words.
        public var minBytes: UInt64?
        public var maxBytes: UInt64?
        public var lenBytes: UInt64?
        public var pattern: String?
        public var prefix: String?
        public var suffix: String?
        public var contains: String?
        public var email = false
        public var uuid = false
    }

    /// Bounds of a numeric rule as JSON numbers (integers for the integer kinds).
    public struct NumberRules: Sendable {
        public var const: JSONNumberValue?
        public var lt: JSONNumberValue?
        public var lte: JSONNumberValue?
        public var gt: JSONNumberValue?
        public var gte: JSONNumberValue?
        public var inList: [JSONNumberValue] = []
        public var notIn: [JSONNumberValue] = []
        public var finite = false
    }

    public struct EnumRules: Sendable {
        public var const: Int32?
        public var definedOnly = false
        public var inList: [Int32] = []
        public var notIn: [Int32] = []
    }

    public final class RepeatedRules: Sendable {
        public let minItems: UInt64?
        public let maxItems: UInt64?
        public let unique: Bool
        public let items: FieldRules?
        init(minItems: UInt64?, maxItems: UInt64?, unique: Bool, items: FieldRules?) {
            self.minItems = minItems
            self.maxItems = maxItems
            self.unique = unique
            self.items = items
        }
    }

    /// Duration bounds in seconds (a Duration's JSON form is a string, so these go into words).
    public struct DurationRules: Sendable {
        public var lt: Double?
        public var lte: Double?
        public var gt: Double?
        public var gte: Double?
    }

    public enum JSONNumberValue: Sendable, Equatable {
        case integer(Int64)
        case unsigned(UInt64)
        case double(Double)
        public var doubleValue: Double {
            switch self {
            case .integer(let value): Double(value)
            case .unsigned(let value): Double(value)
            case .double(let value): value
            }
        }
    }

    /// The extension number of `buf.validate.field`, `.message` and `.oneof` (all 1159).
    static let extensionNumber: UInt32 = 1159
}

/// `buf.validate.message` oneof rules: at most one of `fields`, and one when `required`.
public struct MessageOneofRule: Sendable {
    public var fields: [String]
    public var required: Bool
}

/// Reads protobuf wire format, just enough for the rule messages. Malformed bytes end the read
/// (the generator already refused them when it compiled the checks).
struct RuleReader {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool { index >= bytes.count }

    mutating func tag() -> (number: UInt32, wireType: UInt8)? {
        guard let key = varint() else { return nil }
        return (UInt32(truncatingIfNeeded: key >> 3), UInt8(key & 7))
    }

    mutating func varint() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count, shift < 64 {
            let byte = bytes[index]
            index += 1
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        index = bytes.count
        return nil
    }

    mutating func fixed(_ size: Int) -> UInt64? {
        guard index + size <= bytes.count else { index = bytes.count; return nil }
        var value: UInt64 = 0
        for offset in 0..<size { value |= UInt64(bytes[index + offset]) << (8 * UInt64(offset)) }
        index += size
        return value
    }

    mutating func lengthDelimited() -> [UInt8]? {
        guard let length = varint().map(Int.init), length >= 0, index + length <= bytes.count else { index = bytes.count; return nil }
        defer { index += length }
        return Array(bytes[index..<index + length])
    }

    mutating func skip(_ wireType: UInt8) {
        switch wireType {
        case 0: _ = varint()
        case 1: _ = fixed(8)
        case 2: _ = lengthDelimited()
        case 5: _ = fixed(4)
        default: index = bytes.count
        }
    }

    /// Every value of a scalar field: one, or a packed run.
    mutating func scalars(_ wireType: UInt8, _ read: (inout RuleReader) -> UInt64?) -> [UInt64] {
        if wireType == 2 {
            var packed = RuleReader(bytes: lengthDelimited() ?? [])
            var values: [UInt64] = []
            while !packed.atEnd, let value = read(&packed) { values.append(value) }
            return values
        }
        return read(&self).map { [$0] } ?? []
    }

    var text: String? {
        mutating get { lengthDelimited().map { String(decoding: $0, as: UTF8.self) } }
    }
}

extension FieldRules {
    /// The payload of extension 1159 among an options message's unknown fields.
    static func payload(of base: ProtobufCMessage) -> [UInt8]? {
        var payload: [UInt8]?
        for index in 0..<Int(base.n_unknown_fields) {
            let field = base.unknown_fields[index]
            guard field.tag == extensionNumber, field.wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED else { continue }
            // protobuf-c keeps a length-delimited unknown field as it was after the tag: the
            // length varint, then the message bytes.
            var prefix = 0
            while prefix < field.len, field.data[prefix] & 0x80 != 0 { prefix += 1 }
            prefix += 1
            guard prefix <= field.len else { continue }
            payload = (payload ?? []) + Array(UnsafeBufferPointer(start: field.data + prefix, count: field.len - prefix))
        }
        return payload
    }

    /// `buf.validate.FieldRules` from its bytes.
    init(reading bytes: [UInt8]) {
        var reader = RuleReader(bytes: bytes)
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 25: required = reader.varint() != 0
            case 27:
                let ignore = reader.varint() ?? 0
                ignoreIfZero = ignore == 1
                ignoreAlways = ignore == 3
            case 1...12 where wireType == 2: self.number = Self.numberRules(reader.lengthDelimited() ?? [], kind: number)
            case 14 where wireType == 2: string = Self.stringRules(reader.lengthDelimited() ?? [])
            case 16 where wireType == 2: enumeration = Self.enumRules(reader.lengthDelimited() ?? [])
            case 18 where wireType == 2: repeated = Self.repeatedRules(reader.lengthDelimited() ?? [])
            case 21 where wireType == 2: duration = Self.durationRules(reader.lengthDelimited() ?? [])
            default: reader.skip(wireType)
            }
        }
    }

    private static func stringRules(_ bytes: [UInt8]) -> StringRules {
        var reader = RuleReader(bytes: bytes)
        var rules = StringRules()
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 1: rules.const = reader.text
            case 19: rules.len = reader.varint()
            case 2: rules.minLen = reader.varint()
            case 3: rules.maxLen = reader.varint()
            case 20: rules.lenBytes = reader.varint()
            case 4: rules.minBytes = reader.varint()
            case 5: rules.maxBytes = reader.varint()
            case 6: rules.pattern = reader.text
            case 7: rules.prefix = reader.text
            case 8: rules.suffix = reader.text
            case 9: rules.contains = reader.text
            case 12: rules.email = reader.varint() != 0
            case 22: rules.uuid = reader.varint() != 0
            default: reader.skip(wireType)
            }
        }
        return rules
    }

    /// Numeric rules; `kind` is the FieldRules field number (1 float, 2 double, 3 int32, ...).
    private static func numberRules(_ bytes: [UInt8], kind: UInt32) -> NumberRules {
        var reader = RuleReader(bytes: bytes)
        var rules = NumberRules()
        func values(_ wireType: UInt8) -> [JSONNumberValue] {
            switch kind {
            case 1: return reader.scalars(wireType) { $0.fixed(4) }.map { .double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: $0)))) }
            case 2: return reader.scalars(wireType) { $0.fixed(8) }.map { .double(Double(bitPattern: $0)) }
            case 3: return reader.scalars(wireType) { $0.varint() }.map { .integer(Int64(Int32(truncatingIfNeeded: $0))) }
            case 4: return reader.scalars(wireType) { $0.varint() }.map { .integer(Int64(bitPattern: $0)) }
            case 5, 6: return reader.scalars(wireType) { $0.varint() }.map { .unsigned($0) }
            case 7, 8: return reader.scalars(wireType) { $0.varint() }.map { .integer(Int64(bitPattern: ($0 >> 1) ^ (0 &- ($0 & 1)))) }
            case 9: return reader.scalars(wireType) { $0.fixed(4) }.map { .unsigned($0) }
            case 10: return reader.scalars(wireType) { $0.fixed(8) }.map { .unsigned($0) }
            case 11: return reader.scalars(wireType) { $0.fixed(4) }.map { .integer(Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: $0)))) }
            default: return reader.scalars(wireType) { $0.fixed(8) }.map { .integer(Int64(bitPattern: $0)) }
            }
        }
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 1: rules.const = values(wireType).last
            case 2: rules.lt = values(wireType).last
            case 3: rules.lte = values(wireType).last
            case 4: rules.gt = values(wireType).last
            case 5: rules.gte = values(wireType).last
            case 6: rules.inList += values(wireType)
            case 7: rules.notIn += values(wireType)
            case 8 where kind <= 2: rules.finite = reader.varint() != 0
            default: reader.skip(wireType)
            }
        }
        return rules
    }

    private static func enumRules(_ bytes: [UInt8]) -> EnumRules {
        var reader = RuleReader(bytes: bytes)
        var rules = EnumRules()
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 1: rules.const = reader.varint().map { Int32(truncatingIfNeeded: $0) }
            case 2: rules.definedOnly = reader.varint() != 0
            case 3: rules.inList += reader.scalars(wireType) { $0.varint() }.map { Int32(truncatingIfNeeded: $0) }
            case 4: rules.notIn += reader.scalars(wireType) { $0.varint() }.map { Int32(truncatingIfNeeded: $0) }
            default: reader.skip(wireType)
            }
        }
        return rules
    }

    private static func repeatedRules(_ bytes: [UInt8]) -> RepeatedRules {
        var reader = RuleReader(bytes: bytes)
        var minItems: UInt64?, maxItems: UInt64?, unique = false, items: FieldRules?
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 1: minItems = reader.varint()
            case 2: maxItems = reader.varint()
            case 3: unique = reader.varint() != 0
            case 4 where wireType == 2: items = FieldRules(reading: reader.lengthDelimited() ?? [])
            default: reader.skip(wireType)
            }
        }
        return RepeatedRules(minItems: minItems, maxItems: maxItems, unique: unique, items: items)
    }

    private static func durationRules(_ bytes: [UInt8]) -> DurationRules {
        var reader = RuleReader(bytes: bytes)
        var rules = DurationRules()
        func seconds(_ bytes: [UInt8]) -> Double {
            var inner = RuleReader(bytes: bytes)
            var seconds: Int64 = 0, nanos: Int32 = 0
            while !inner.atEnd, case let (number, wireType)? = inner.tag() {
                switch number {
                case 1: seconds = Int64(bitPattern: inner.varint() ?? 0)
                case 2: nanos = Int32(truncatingIfNeeded: inner.varint() ?? 0)
                default: inner.skip(wireType)
                }
            }
            return Double(seconds) + Double(nanos) / 1e9
        }
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            switch number {
            case 3: rules.lt = seconds(reader.lengthDelimited() ?? [])
            case 4: rules.lte = seconds(reader.lengthDelimited() ?? [])
            case 5: rules.gt = seconds(reader.lengthDelimited() ?? [])
            case 6: rules.gte = seconds(reader.lengthDelimited() ?? [])
            default: reader.skip(wireType)
            }
        }
        return rules
    }

    /// `buf.validate.MessageRules`' oneof rules.
    static func messageOneofRules(_ bytes: [UInt8]) -> [MessageOneofRule] {
        var reader = RuleReader(bytes: bytes)
        var rules: [MessageOneofRule] = []
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            guard number == 4, wireType == 2 else { reader.skip(wireType); continue }
            var inner = RuleReader(bytes: reader.lengthDelimited() ?? [])
            var rule = MessageOneofRule(fields: [], required: false)
            while !inner.atEnd, case let (innerNumber, innerWire)? = inner.tag() {
                switch innerNumber {
                case 1: if let name = inner.text { rule.fields.append(name) }
                case 2: rule.required = inner.varint() != 0
                default: inner.skip(innerWire)
                }
            }
            rules.append(rule)
        }
        return rules
    }

    /// `buf.validate.OneofRules.required`.
    static func oneofRequired(_ bytes: [UInt8]) -> Bool {
        var reader = RuleReader(bytes: bytes)
        var required = false
        while !reader.atEnd, case let (number, wireType)? = reader.tag() {
            if number == 1 { required = reader.varint() != 0 } else { reader.skip(wireType) }
        }
        return required
    }
}
