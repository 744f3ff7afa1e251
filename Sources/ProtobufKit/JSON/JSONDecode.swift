/// Conversions from parsed JSON to field values, as the proto3 JSON mapping specifies them.
/// Generated code calls these; errors carry no path (the caller adds it).
public enum JSONDecode {
    public static func bool(_ value: JSONValue) throws -> Bool {
        guard case .bool(let bool) = value else { throw JSONDecodingError.typeMismatch(expected: "true or false", got: value) }
        return bool
    }

    /// An integral number in range, given as a JSON number or a string holding one.
    static func integer<T: FixedWidthInteger>(_ value: JSONValue, _ type: T.Type, _ typeName: String) throws -> T {
        switch value {
        case .integer(let int):
            guard let result = T(exactly: int) else { throw JSONDecodingError("\(int) is out of range for \(typeName)") }
            return result
        case .number(let double):
            guard double.isFinite, double == double.rounded(), let result = T(exactly: double) else {
                throw JSONDecodingError("\(double) is not a valid \(typeName)")
            }
            return result
        case .string(let text):
            if let result = T(text) { return result }
            // Exponent or fraction forms ("1e3", "5.0") are accepted when integral.
            if let double = Double(text), double.isFinite, double == double.rounded(), let result = T(exactly: double) {
                return result
            }
            throw JSONDecodingError("expected \(typeName), got \(value.shortDescription)")
        default:
            throw JSONDecodingError.typeMismatch(expected: "a number", got: value)
        }
    }

    public static func int32(_ value: JSONValue) throws -> Int32 { try integer(value, Int32.self, "an int32") }
    public static func uint32(_ value: JSONValue) throws -> UInt32 { try integer(value, UInt32.self, "a uint32") }
    public static func int64(_ value: JSONValue) throws -> Int64 { try integer(value, Int64.self, "an int64") }
    public static func uint64(_ value: JSONValue) throws -> UInt64 { try integer(value, UInt64.self, "a uint64") }

    public static func double(_ value: JSONValue) throws -> Double {
        switch value {
        case .number(let double): return double
        case .integer(let int): return Double(int)
        case .string(let text):
            switch text {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                guard let double = Double(text), double.isFinite else {
                    throw JSONDecodingError("expected a number, got \(value.shortDescription)")
                }
                return double
            }
        default:
            throw JSONDecodingError.typeMismatch(expected: "a number", got: value)
        }
    }

    public static func float(_ value: JSONValue) throws -> Float {
        let double = try double(value)
        if double.isFinite && abs(double) > Double(Float.greatestFiniteMagnitude) {
            throw JSONDecodingError("\(double) is out of range for a float")
        }
        return Float(double)
    }

    public static func string(_ value: JSONValue) throws -> String {
        guard case .string(let string) = value else { throw JSONDecodingError.typeMismatch(expected: "a string", got: value) }
        return string
    }

    public static func bytes(_ value: JSONValue) throws -> [UInt8] {
        guard case .string(let text) = value else { throw JSONDecodingError.typeMismatch(expected: "a base64 string", got: value) }
        guard let bytes = Base64.decode(text) else { throw JSONDecodingError("expected base64, got \(value.shortDescription)") }
        return bytes
    }

    /// An enum value by name or number. Returns nil for an unknown name when unknown fields are
    /// ignored, so the caller leaves the field unset.
    public static func enumValue<E: Enum>(_ value: JSONValue, as type: E.Type, context: JSONDecodingContext) throws -> E? {
        switch value {
        case .string(let name):
            if let number = E.protoNames.number(for: name) { return E(rawValue: number) }
            if context.options.ignoreUnknownFields { return nil }
            throw JSONDecodingError("\(value.shortDescription) is not a value of \(E.protoNames.enumName)")
        case .integer, .number:
            return E(rawValue: try int32(value))
        default:
            throw JSONDecodingError.typeMismatch(expected: "an enum name or number", got: value)
        }
    }

    /// `google.protobuf.NullValue`, whose JSON form is `null`.
    public static func nullValue<E: Enum>(_ value: JSONValue) throws -> E {
        switch value {
        case .null: return E()
        case .string("NULL_VALUE"): return E()
        case .integer(0): return E()
        default: throw JSONDecodingError.typeMismatch(expected: "null", got: value)
        }
    }

    /// A repeated field: a JSON array (null is handled by the caller as empty).
    /// `allowNull` is for elements of type `google.protobuf.Value`, where null is a value.
    public static func array<T>(_ value: JSONValue, allowNull: Bool = false, _ element: (JSONValue) throws -> T) throws -> [T] {
        guard case .array(let elements) = value else { throw JSONDecodingError.typeMismatch(expected: "an array", got: value) }
        var result: [T] = []
        result.reserveCapacity(elements.count)
        for (index, item) in elements.enumerated() {
            do {
                if !allowNull, case .null = item { throw JSONDecodingError("null is not allowed in a repeated field") }
                result.append(try element(item))
            } catch let error as JSONDecodingError {
                throw error.under("[\(index)]")
            }
        }
        return result
    }

    /// A map field: a JSON object whose keys are the map keys as strings.
    public static func map<K: Hashable, V>(_ value: JSONValue, allowNull: Bool = false, key: (String) throws -> K, _ element: (JSONValue) throws -> V) throws -> [K: V] {
        guard case .object(let members) = value else { throw JSONDecodingError.typeMismatch(expected: "an object", got: value) }
        var result: [K: V] = [:]
        result.reserveCapacity(members.count)
        for member in members {
            do {
                if !allowNull, case .null = member.value { throw JSONDecodingError("null is not allowed as a map value") }
                result[try key(member.key)] = try element(member.value)
            } catch let error as JSONDecodingError {
                throw error.under("[\(member.key.debugDescription)]")
            }
        }
        return result
    }

    public static func mapKey_string(_ key: String) throws -> String { key }
    public static func mapKey_bool(_ key: String) throws -> Bool {
        switch key {
        case "true": return true
        case "false": return false
        default: throw JSONDecodingError("map key \(key.debugDescription) is not true or false")
        }
    }
    public static func mapKey_int32(_ key: String) throws -> Int32 { try int32(.string(key)) }
    public static func mapKey_uint32(_ key: String) throws -> UInt32 { try uint32(.string(key)) }
    public static func mapKey_int64(_ key: String) throws -> Int64 { try int64(.string(key)) }
    public static func mapKey_uint64(_ key: String) throws -> UInt64 { try uint64(.string(key)) }
}

extension Message {
    /// The message as canonical proto3 JSON text.
    public func jsonString(options: JSONEncodingOptions = JSONEncodingOptions()) throws -> String {
        String(decoding: try jsonUTF8Bytes(options: options), as: UTF8.self)
    }

    /// The message as canonical proto3 JSON, UTF-8 encoded.
    public func jsonUTF8Bytes(options: JSONEncodingOptions = JSONEncodingOptions()) throws -> [UInt8] {
        var writer = JSONWriter(options: options)
        try _writeJSON(to: &writer)
        return writer.bytes
    }

    /// Reads a message from proto3 JSON text.
    ///
    /// - Throws: `JSONDecodingError` whose description starts with the path of the offending
    ///   field, for example `packageInfo.weight: expected a number, got "heavy"`.
    public init(jsonString text: String, options: JSONDecodingOptions = JSONDecodingOptions()) throws {
        try self.init(_jsonValue: try JSONParser.parse(text), context: JSONDecodingContext(options: options))
    }

    /// Reads a message from UTF-8 proto3 JSON.
    public init(jsonUTF8Bytes bytes: [UInt8], options: JSONDecodingOptions = JSONDecodingOptions()) throws {
        try self.init(_jsonValue: try JSONParser.parse(bytes), context: JSONDecodingContext(options: options))
    }
}
