import ProtobufKit

/// The value of one request-field flag of a generated command, with what the generator knew about
/// the field: where it sits in the request (by JSON and proto names), what kind of value it
/// takes, and the oneof it belongs to.
///
/// Generated commands build one per flag; `RequestAssembler` turns the given ones into members of
/// the request's JSON document.
public struct FieldFlag: Sendable {
    /// What a flag's text means.
    public enum Kind: Sendable, Hashable {
        case string
        /// 32-bit integers: a JSON number.
        case integer
        /// 64-bit integers: a JSON string, as proto3 JSON writes them.
        case int64
        /// float and double, including `NaN`, `Infinity`, `-Infinity`.
        case number
        case bool
        /// base64, or `@FILE` for the file's bytes.
        case bytes
        /// An enum value by name (case-insensitive, with or without the enum's prefix) or number.
        case enumeration([String])
        /// RFC 3339, for example `2026-12-01T10:00:00Z`.
        case timestamp
        /// `1.5s`, `300ms`, `2m`, `1h30m`.
        case duration
        /// Comma-separated field paths.
        case fieldMask
        /// JSON text (messages that are not flattened, Struct, Value, Any).
        case json
        /// google.protobuf.Empty: the flag sets it.
        case empty
    }

    public enum Shape: Sendable, Hashable {
        case singular
        case repeated
        case map(key: Kind, value: Kind)
    }

    /// The long name, without dashes.
    public let name: String
    /// JSON names from the request's root.
    public let jsonPath: [String]
    /// Proto names from the request's root.
    public let protoPath: [String]
    public let kind: Kind
    public let shape: Shape
    /// The oneof this field is a member of, qualified by its message's path.
    public let oneof: String?
    /// The texts given, in order (empty when the flag was not given).
    public let values: [String]

    init(name: String, json: String, proto: String, kind: Kind, shape: Shape, oneof: String?, values: [String]) {
        self.name = name
        self.jsonPath = json.split(separator: ".").map(String.init)
        self.protoPath = proto.split(separator: ".").map(String.init)
        self.kind = kind
        self.shape = shape
        self.oneof = oneof
        self.values = values
    }

    /// A singular field's option.
    public init(_ name: String, json: String, proto: String, _ kind: Kind, _ shape: Shape, oneof: String? = nil, _ value: String?) {
        self.init(name: name, json: json, proto: proto, kind: kind, shape: shape, oneof: oneof, values: value.map { [$0] } ?? [])
    }

    /// A repeated or map field's option.
    public init(_ name: String, json: String, proto: String, _ kind: Kind, _ shape: Shape, oneof: String? = nil, _ values: [String]) {
        self.init(name: name, json: json, proto: proto, kind: kind, shape: shape, oneof: oneof, values: values)
    }

    /// A bool field's `--name` / `--no-name` switch.
    public init(_ name: String, json: String, proto: String, _ kind: Kind, _ shape: Shape, oneof: String? = nil, _ value: Bool?) {
        self.init(name: name, json: json, proto: proto, kind: kind, shape: shape, oneof: oneof, values: value.map { [$0 ? "true" : "false"] } ?? [])
    }

    /// An Empty field's presence switch.
    public init(_ name: String, json: String, proto: String, _ kind: Kind, _ shape: Shape, oneof: String? = nil, _ present: Bool) {
        self.init(name: name, json: json, proto: proto, kind: kind, shape: shape, oneof: oneof, values: present ? ["true"] : [])
    }

    public var isGiven: Bool { !values.isEmpty }

    /// The flag's value as JSON (the field's value: a scalar, an array or an object).
    public func jsonValue(files: FileReader = FileReader()) throws -> JSONValue {
        switch shape {
        case .singular:
            return try Self.convert(values[values.count - 1], kind, flag: name, files: files)
        case .repeated:
            return .array(try values.map { try Self.convert($0, kind, flag: name, files: files) })
        case .map(_, let valueKind):
            var members: [JSONMember] = []
            for text in values {
                guard let equals = text.firstIndex(of: "=") else {
                    throw UsageError("--\(name): expected key=value, got \"\(text)\"")
                }
                let key = String(text[..<equals])
                // A key given twice keeps its last value, as a map would.
                members.removeAll { $0.key == key }
                members.append(JSONMember(key, try Self.convert(String(text[text.index(after: equals)...]), valueKind, flag: name, files: files)))
            }
            return .object(members)
        }
    }

    /// One text as the JSON value of `kind`. Only what the proto3 JSON decoder cannot tell is
    /// checked here (enum names, files, JSON syntax); anything else is handed on as a JSON value
    /// the decoder checks, and its error is reported under this flag's name.
    static func convert(_ text: String, _ kind: Kind, flag: String, files: FileReader) throws -> JSONValue {
        switch kind {
        case .string, .timestamp, .duration, .fieldMask:
            return .string(text)
        case .integer:
            if let value = Int64(text) { return .integer(value) }
            return .string(text)
        case .int64:
            return .string(text)
        case .number:
            if let value = Int64(text) { return .integer(value) }
            if let value = Double(text), value.isFinite { return .number(value) }
            return .string(text)
        case .bool:
            switch text.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: throw UsageError("--\(flag): expected true or false, got \"\(text)\"")
            }
        case .bytes:
            guard text.hasPrefix("@") else { return .string(text) }
            let path = String(text.dropFirst())
            do {
                return .string(Base64.encode(try files.read(path)))
            } catch {
                throw UsageError("--\(flag): \(error)")
            }
        case .enumeration(let names):
            if let number = Int32(text) { return .integer(Int64(number)) }
            if names.contains(text) { return .string(text) }
            if let match = Self.enumName(text, among: names) { return .string(match) }
            throw UsageError("--\(flag): expected one of \(names.joined(separator: ", ")), got \"\(text)\"")
        case .json:
            do {
                return try JSONParser.parse(text)
            } catch {
                throw UsageError("--\(flag): expected JSON: \(error)")
            }
        case .empty:
            return .object([])
        }
    }

    /// `completed` or `COMPLETED` for `DELIVERY_STAGE_COMPLETED`: the name without the prefix the
    /// enum's values share, in any case, when exactly one value matches.
    static func enumName(_ text: String, among names: [String]) -> String? {
        let upper = text.uppercased().map { $0 == "-" ? "_" : $0 }.map(String.init).joined()
        if names.contains(upper) { return upper }
        let matches = names.filter { $0.hasSuffix("_" + upper) }
        return matches.count == 1 ? matches[0] : nil
    }
}

/// The names of a generated enum's values, for flags and completion.
public func enumNames<E: ProtobufKit.Enum>(_ type: E.Type) -> [String] {
    E.allCases.compactMap(\.protoName)
}
