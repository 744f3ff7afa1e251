// protovalidate's field rules (buf/validate/validate.proto), read from the options protoc passes
// as unknown fields, into a model the Swift emitter turns into checks.
//
// Only the standard rules are supported; a rule this generator does not implement (a custom CEL
// rule, a map rule, a well-known string format other than email and uuid, ...) is refused with
// an error naming the field and the rule, rather than silently not checked.

/// Reads protobuf wire format (just enough for the rule messages).
struct WireReader {
    let bytes: [UInt8]
    var index = 0
    let what: String

    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    var atEnd: Bool { index >= bytes.count }

    mutating func tag() throws -> (number: UInt32, wireType: UInt8) {
        let key = try varint()
        return (UInt32(truncatingIfNeeded: key >> 3), UInt8(key & 7))
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < bytes.count, shift < 64 else { throw GeneratorError("\(what): truncated varint") }
            let byte = bytes[index]
            index += 1
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func fixed64() throws -> UInt64 {
        guard index + 8 <= bytes.count else { throw GeneratorError("\(what): truncated fixed64") }
        var value: UInt64 = 0
        for offset in 0..<8 { value |= UInt64(bytes[index + offset]) << (8 * UInt64(offset)) }
        index += 8
        return value
    }

    mutating func fixed32() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw GeneratorError("\(what): truncated fixed32") }
        var value: UInt32 = 0
        for offset in 0..<4 { value |= UInt32(bytes[index + offset]) << (8 * UInt32(offset)) }
        index += 4
        return value
    }

    mutating func lengthDelimited() throws -> [UInt8] {
        let length = Int(try varint())
        guard length >= 0, index + length <= bytes.count else { throw GeneratorError("\(what): truncated field") }
        defer { index += length }
        return Array(bytes[index..<index + length])
    }

    mutating func skip(_ wireType: UInt8) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw GeneratorError("\(what): unsupported wire type \(wireType)")
        }
    }

    /// Every value of a scalar field: one, or a packed run of them.
    mutating func scalars(_ wireType: UInt8, _ read: (inout WireReader) throws -> UInt64) throws -> [UInt64] {
        if wireType == 2 {
            var packed = WireReader(try lengthDelimited(), what: what)
            var values: [UInt64] = []
            while !packed.atEnd { values.append(try read(&packed)) }
            return values
        }
        return [try read(&self)]
    }
}

/// A constant of a rule: its Swift source text and its text in protovalidate's messages.
public struct RuleValue: Hashable {
    public var swift: String
    public var text: String
}

/// Bounds, `const`, `in` and `not_in` of a numeric (or duration) rule.
public struct RangeRules: Hashable {
    /// `double`, `int32`, ..., `duration`: the rule-id prefix.
    public var kind: String
    public var gt: RuleValue?
    public var gte: RuleValue?
    public var lt: RuleValue?
    public var lte: RuleValue?
    public var const: RuleValue?
    public var inList: [RuleValue] = []
    public var notIn: [RuleValue] = []
    public var finite = false
    /// Duration bounds as (seconds, nanos), to compare with `Validation.compare`.
    public var durations: [String: (Int64, Int32)] = [:]

    public static func == (lhs: RangeRules, rhs: RangeRules) -> Bool {
        lhs.kind == rhs.kind && lhs.gt == rhs.gt && lhs.gte == rhs.gte && lhs.lt == rhs.lt && lhs.lte == rhs.lte
    }
    public func hash(into hasher: inout Hasher) { hasher.combine(kind) }
}

public struct StringRules: Hashable {
    public var const: String?
    public var len: UInt64?
    public var minLen: UInt64?
    public var maxLen: UInt64?
    public var lenBytes: UInt64?
    public var minBytes: UInt64?
    public var maxBytes: UInt64?
    public var pattern: String?
    public var prefix: String?
    public var suffix: String?
    public var contains: String?
    public var email = false
    public var uuid = false
}

public struct EnumRules: Hashable {
    public var const: Int32?
    public var definedOnly = false
    public var inList: [Int32] = []
    public var notIn: [Int32] = []
}

public struct RepeatedRules: Hashable {
    public var minItems: UInt64?
    public var maxItems: UInt64?
    public var unique = false
    public var items: FieldRules?
}

public indirect enum TypeRules: Hashable {
    case range(RangeRules)
    case string(StringRules)
    case enumeration(EnumRules)
    case repeated(RepeatedRules)
}

/// `buf.validate.FieldRules`, the supported part.
public struct FieldRules: Hashable {
    public enum Ignore: Int { case unspecified = 0, ifZeroValue = 1, always = 3 }
    public var required = false
    public var ignore = Ignore.unspecified
    public var type: TypeRules?
}

/// `buf.validate.MessageOneofRule`.
public struct MessageOneofRule: Hashable {
    public var fields: [String]
    public var required: Bool
}

public enum ValidationRulesParser {
    /// The numeric kinds, by FieldRules field number: (rule name, wire reading, Swift type).
    static let numericKinds: [UInt32: String] = [
        1: "float", 2: "double", 3: "int32", 4: "int64", 5: "uint32", 6: "uint64", 7: "sint32", 8: "sint64",
        9: "fixed32", 10: "fixed64", 11: "sfixed32", 12: "sfixed64",
    ]
    /// Which rule kind fits a field of each type.
    static func ruleKind(for type: ProtoFieldType, typeName: String) -> String {
        switch type {
        case .double: return "double"
        case .float: return "float"
        case .int32: return "int32"
        case .int64: return "int64"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .sint32: return "sint32"
        case .sint64: return "sint64"
        case .fixed32: return "fixed32"
        case .fixed64: return "fixed64"
        case .sfixed32: return "sfixed32"
        case .sfixed64: return "sfixed64"
        case .bool: return "bool"
        case .string: return "string"
        case .bytes: return "bytes"
        case .enum: return "enum"
        case .message: return typeName == "google.protobuf.Duration" ? "duration" : typeName == "google.protobuf.Timestamp" ? "timestamp" : "message"
        case .group: return "group"
        }
    }

    public static func fieldRules(_ bytes: [UInt8], field: ProtoField, elementOnly: Bool = false, what: String) throws -> FieldRules {
        var reader = WireReader(bytes, what: what)
        var rules = FieldRules()
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 25: rules.required = try reader.varint() != 0
            case 27:
                let raw = Int(try reader.varint())
                guard let ignore = FieldRules.Ignore(rawValue: raw) else { throw GeneratorError("\(what): ignore = \(raw) is not supported") }
                rules.ignore = ignore
            case 23, 29:
                throw GeneratorError("\(what): custom CEL rules (cel, cel_expression) are not supported by protoc-gen-swiftpbc; express the rule with the standard rules, or check it in the service")
            case 1...12:
                let kind = numericKinds[number]!
                try expectKind(kind, field: field, elementOnly: elementOnly, what: what)
                rules.type = .range(try rangeRules(try reader.lengthDelimited(), kind: kind, what: what + " (\(kind))"))
            case 14:
                try expectKind("string", field: field, elementOnly: elementOnly, what: what)
                rules.type = .string(try stringRules(try reader.lengthDelimited(), what: what + " (string)"))
            case 16:
                try expectKind("enum", field: field, elementOnly: elementOnly, what: what)
                rules.type = .enumeration(try enumRules(try reader.lengthDelimited(), what: what + " (enum)"))
            case 18:
                guard field.isRepeated, !elementOnly else { throw GeneratorError("\(what): repeated rules on a field that is not repeated") }
                rules.type = .repeated(try repeatedRules(try reader.lengthDelimited(), field: field, what: what + " (repeated)"))
            case 21:
                try expectKind("duration", field: field, elementOnly: elementOnly, what: what)
                rules.type = .range(try durationRules(try reader.lengthDelimited(), what: what + " (duration)"))
            default:
                let names: [UInt32: String] = [13: "bool", 15: "bytes", 19: "map", 20: "any", 22: "timestamp", 28: "field_mask"]
                throw GeneratorError("\(what): buf.validate \(names[number] ?? "field \(number)") rules are not supported by protoc-gen-swiftpbc")
            }
            _ = wireType
        }
        return rules
    }

    static func expectKind(_ kind: String, field: ProtoField, elementOnly: Bool, what: String) throws {
        let actual = ruleKind(for: field.type, typeName: field.typeName)
        guard actual == kind else { throw GeneratorError("\(what): \(kind) rules on a field of type \(actual)") }
        if field.isRepeated && !elementOnly {
            throw GeneratorError("\(what): \(kind) rules on a repeated field (use repeated.items)")
        }
    }

    static func repeatedRules(_ bytes: [UInt8], field: ProtoField, what: String) throws -> RepeatedRules {
        var reader = WireReader(bytes, what: what)
        var rules = RepeatedRules()
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 1: rules.minItems = try reader.varint()
            case 2: rules.maxItems = try reader.varint()
            case 3: rules.unique = try reader.varint() != 0
            case 4: rules.items = try fieldRules(try reader.lengthDelimited(), field: field, elementOnly: true, what: what + ".items")
            default: try reader.skip(wireType); throw GeneratorError("\(what): rule field \(number) is not supported")
            }
        }
        if rules.unique, field.type == .message { throw GeneratorError("\(what): unique on message items is not supported") }
        return rules
    }

    static func enumRules(_ bytes: [UInt8], what: String) throws -> EnumRules {
        var reader = WireReader(bytes, what: what)
        var rules = EnumRules()
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 1: rules.const = Int32(truncatingIfNeeded: try reader.varint())
            case 2: rules.definedOnly = try reader.varint() != 0
            case 3: rules.inList += try reader.scalars(wireType) { try $0.varint() }.map { Int32(truncatingIfNeeded: $0) }
            case 4: rules.notIn += try reader.scalars(wireType) { try $0.varint() }.map { Int32(truncatingIfNeeded: $0) }
            case 5: try reader.skip(wireType) // example
            default: throw GeneratorError("\(what): rule field \(number) is not supported")
            }
        }
        return rules
    }

    static func stringRules(_ bytes: [UInt8], what: String) throws -> StringRules {
        var reader = WireReader(bytes, what: what)
        var rules = StringRules()
        func text(_ reader: inout WireReader) throws -> String { String(decoding: try reader.lengthDelimited(), as: UTF8.self) }
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 1: rules.const = try text(&reader)
            case 19: rules.len = try reader.varint()
            case 2: rules.minLen = try reader.varint()
            case 3: rules.maxLen = try reader.varint()
            case 20: rules.lenBytes = try reader.varint()
            case 4: rules.minBytes = try reader.varint()
            case 5: rules.maxBytes = try reader.varint()
            case 6:
                let pattern = try text(&reader)
                do { _ = try Regex(pattern) } catch { throw GeneratorError("\(what): pattern `\(pattern)` does not compile: \(error)") }
                rules.pattern = pattern
            case 7: rules.prefix = try text(&reader)
            case 8: rules.suffix = try text(&reader)
            case 9: rules.contains = try text(&reader)
            case 12: rules.email = try reader.varint() != 0
            case 22: rules.uuid = try reader.varint() != 0
            case 34: try reader.skip(wireType) // example
            default:
                let names: [UInt32: String] = [10: "in", 11: "not_in", 13: "hostname", 14: "ip", 15: "ipv4", 16: "ipv6", 17: "uri", 18: "uri_ref",
                                               21: "address", 23: "not_contains", 24: "well_known_regex", 33: "tuuid", 35: "ulid"]
                throw GeneratorError("\(what): string.\(names[number] ?? "field \(number)") is not supported by protoc-gen-swiftpbc")
            }
        }
        return rules
    }

    /// Reads one numeric value of `kind` and renders it.
    static func numericValue(_ reader: inout WireReader, kind: String, wireType: UInt8) throws -> [RuleValue] {
        switch kind {
        case "double":
            return try reader.scalars(wireType) { try $0.fixed64() }.map { try doubleValue(Double(bitPattern: $0)) }
        case "float":
            return try reader.scalars(wireType) { UInt64(try $0.fixed32()) }.map { try doubleValue(Double(Float(bitPattern: UInt32($0)))) }
        case "int32":
            return try reader.scalars(wireType) { try $0.varint() }.map { integer(Int64(Int32(truncatingIfNeeded: $0))) }
        case "int64":
            return try reader.scalars(wireType) { try $0.varint() }.map { integer(Int64(bitPattern: $0)) }
        case "uint32", "uint64":
            return try reader.scalars(wireType) { try $0.varint() }.map { RuleValue(swift: "\($0)", text: "\($0)") }
        case "sint32", "sint64":
            return try reader.scalars(wireType) { try $0.varint() }.map { integer(Int64(bitPattern: ($0 >> 1) ^ (0 &- ($0 & 1)))) }
        case "fixed32":
            return try reader.scalars(wireType) { UInt64(try $0.fixed32()) }.map { RuleValue(swift: "\($0)", text: "\($0)") }
        case "sfixed32":
            return try reader.scalars(wireType) { UInt64(try $0.fixed32()) }.map { integer(Int64(Int32(bitPattern: UInt32($0)))) }
        case "fixed64":
            return try reader.scalars(wireType) { try $0.fixed64() }.map { RuleValue(swift: "\($0)", text: "\($0)") }
        default:
            return try reader.scalars(wireType) { try $0.fixed64() }.map { integer(Int64(bitPattern: $0)) }
        }
    }

    static func integer(_ value: Int64) -> RuleValue { RuleValue(swift: "\(value)", text: "\(value)") }

    static func doubleValue(_ value: Double) throws -> RuleValue {
        guard value.isFinite else { throw GeneratorError("non-finite bounds are not supported") }
        let text = value == value.rounded() && abs(value) < 1e15 ? "\(Int64(value))" : "\(value)"
        return RuleValue(swift: "\(value)", text: text)
    }

    static func rangeRules(_ bytes: [UInt8], kind: String, what: String) throws -> RangeRules {
        var reader = WireReader(bytes, what: what)
        var rules = RangeRules(kind: kind)
        let floating = kind == "double" || kind == "float"
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 1: rules.const = try numericValue(&reader, kind: kind, wireType: wireType).last
            case 2: rules.lt = try numericValue(&reader, kind: kind, wireType: wireType).last
            case 3: rules.lte = try numericValue(&reader, kind: kind, wireType: wireType).last
            case 4: rules.gt = try numericValue(&reader, kind: kind, wireType: wireType).last
            case 5: rules.gte = try numericValue(&reader, kind: kind, wireType: wireType).last
            case 6: rules.inList += try numericValue(&reader, kind: kind, wireType: wireType)
            case 7: rules.notIn += try numericValue(&reader, kind: kind, wireType: wireType)
            case 8 where floating: rules.finite = try reader.varint() != 0
            case 8, 9: try reader.skip(wireType) // example
            default: throw GeneratorError("\(what): rule field \(number) is not supported")
            }
        }
        return rules
    }

    static func durationRules(_ bytes: [UInt8], what: String) throws -> RangeRules {
        var reader = WireReader(bytes, what: what)
        var rules = RangeRules(kind: "duration")
        func duration(_ bytes: [UInt8]) throws -> (Int64, Int32) {
            var inner = WireReader(bytes, what: what)
            var seconds: Int64 = 0, nanos: Int32 = 0
            while !inner.atEnd {
                let (number, wireType) = try inner.tag()
                switch number {
                case 1: seconds = Int64(bitPattern: try inner.varint())
                case 2: nanos = Int32(truncatingIfNeeded: try inner.varint())
                default: try inner.skip(wireType)
                }
            }
            return (seconds, nanos)
        }
        func value(_ name: String, _ bytes: [UInt8]) throws -> RuleValue {
            let (seconds, nanos) = try duration(bytes)
            rules.durations[name] = (seconds, nanos)
            return RuleValue(swift: "(\(seconds), \(nanos))", text: durationText(seconds: seconds, nanos: nanos))
        }
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 3: rules.lt = try value("lt", try reader.lengthDelimited())
            case 4: rules.lte = try value("lte", try reader.lengthDelimited())
            case 5: rules.gt = try value("gt", try reader.lengthDelimited())
            case 6: rules.gte = try value("gte", try reader.lengthDelimited())
            case 9: try reader.skip(wireType) // example
            default: throw GeneratorError("\(what): duration rule field \(number) is not supported (only lt, lte, gt, gte)")
            }
        }
        return rules
    }

    /// A duration as CEL prints it: `0s`, `86400s`, `1.5s`.
    static func durationText(seconds: Int64, nanos: Int32) -> String {
        if nanos == 0 { return "\(seconds)s" }
        let negative = seconds < 0 || nanos < 0
        var fraction = String(abs(Int(nanos)))
        fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(negative ? "-" : "")\(abs(seconds)).\(fraction)s"
    }

    public static func oneofRequired(_ bytes: [UInt8], what: String) throws -> Bool {
        var reader = WireReader(bytes, what: what)
        var required = false
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            if number == 1 { required = try reader.varint() != 0 } else { try reader.skip(wireType) }
        }
        return required
    }

    public static func messageRules(_ bytes: [UInt8], what: String) throws -> [MessageOneofRule] {
        var reader = WireReader(bytes, what: what)
        var rules: [MessageOneofRule] = []
        while !reader.atEnd {
            let (number, wireType) = try reader.tag()
            switch number {
            case 4:
                var inner = WireReader(try reader.lengthDelimited(), what: what)
                var rule = MessageOneofRule(fields: [], required: false)
                while !inner.atEnd {
                    let (innerNumber, innerWire) = try inner.tag()
                    switch innerNumber {
                    case 1: rule.fields.append(String(decoding: try inner.lengthDelimited(), as: UTF8.self))
                    case 2: rule.required = try inner.varint() != 0
                    default: try inner.skip(innerWire)
                    }
                }
                rules.append(rule)
            case 3, 5:
                throw GeneratorError("\(what): custom CEL rules (cel, cel_expression) are not supported by protoc-gen-swiftpbc; express the rule with the standard rules, or check it in the service")
            default:
                try reader.skip(wireType)
                throw GeneratorError("\(what): message rule field \(number) is not supported")
            }
        }
        return rules
    }
}
