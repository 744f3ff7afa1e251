/// A parsed JSON value: the input side of the canonical proto3 JSON mapping.
///
/// Objects keep their members in input order (duplicates included), so the mapping can report
/// a repeated key instead of silently keeping one. Integers that fit in 64 bits are kept exact.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number written with a fraction or exponent, or too large for Int64.
    case number(Double)
    /// A number written as an integer that fits in Int64.
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object([JSONMember])

    /// A short rendering for error messages: `"heavy"`, `a number`, `an object`.
    var shortDescription: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .number(let value): return "\(value)"
        case .integer(let value): return "\(value)"
        case .string(let value):
            let clipped = value.count > 40 ? String(value.prefix(40)) + "..." : value
            return "\"\(clipped)\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// One `"key": value` member of a JSON object.
public struct JSONMember: Sendable, Hashable {
    public var key: String
    public var value: JSONValue
    public init(_ key: String, _ value: JSONValue) {
        self.key = key
        self.value = value
    }
}

extension Array where Element == JSONMember {
    /// Iterates as `(key, value)` pairs.
    func makePairs() -> [(String, JSONValue)] { map { ($0.key, $0.value) } }
}
