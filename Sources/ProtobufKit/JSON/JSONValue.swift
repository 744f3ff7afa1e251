/// A JSON value as a tree, for code that looks at JSON generically (messages themselves are read
/// straight from the text by `JSONScanner`; `Message.init(jsonValue:)` reads one from a tree).
///
/// Objects keep their members in input order, duplicates included. Integers that fit in 64 bits
/// are kept exact.
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
