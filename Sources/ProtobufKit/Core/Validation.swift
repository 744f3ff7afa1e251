import Synchronization

/// Field rules (protovalidate's `buf.validate` annotations in the .proto files, issue 14).
///
/// protoc-gen-swiftpbc turns the rules of each message into a `_collectViolations` method (no
/// CEL interpreter at run time: the standard rules are compiled into Swift). A message with no
/// rules, directly or through its fields, keeps the default, which finds nothing. The RPC runtime
/// checks every request on both ends (the client before sending, the server before the handler)
/// and answers INVALID_ARGUMENT with a google.rpc.BadRequest naming every violated field.
///
/// ```swift
/// let violations = request.validationViolations()
/// // [ValidationViolation(field: "pickup_location.latitude", ruleID: "double.gte_lte",
/// //                      message: "must be greater than or equal to -90 and less than or equal to 90")]
/// ```
///
/// Field paths, rule ids and messages are protovalidate's (a corpus test compares them with its
/// Python implementation): `a.b`, `items[2].name`, a oneof's name, and "" for a message-level rule.
public struct ValidationViolation: Sendable, Hashable, CustomStringConvertible {
    /// The violated field's path from the validated message (proto field names).
    public var field: String
    /// protovalidate's rule id: `required`, `string.max_bytes`, `double.gt`, `message.oneof`, ...
    public var ruleID: String
    /// What is wrong, in protovalidate's words (`must be at most 128 bytes`).
    public var message: String

    public init(field: String, ruleID: String, message: String) {
        self.field = field
        self.ruleID = ruleID
        self.message = message
    }

    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

extension Message {
    /// No rules: nothing to find. Generated code overrides this for messages with rules.
    public func _collectViolations(at path: String, into violations: inout [ValidationViolation]) {}

    /// Every field rule this message breaks (empty when it is valid).
    public func validationViolations() -> [ValidationViolation] {
        var violations: [ValidationViolation] = []
        _collectViolations(at: "", into: &violations)
        return violations
    }
}

/// Helpers the generated checks call.
public enum Validation {
    /// `base.name` (or `name` at the root).
    @inlinable
    public static func path(_ base: String, _ name: String) -> String {
        base.isEmpty ? name : base + "." + name
    }

    /// `base[index]`.
    @inlinable
    public static func path(_ base: String, index: Int) -> String {
        base + "[\(index)]"
    }

    /// Number of Unicode code points (protovalidate's string length).
    @inlinable
    public static func length(_ value: String) -> Int { value.unicodeScalars.count }

    /// Whether `value` contains a match of `pattern` (an unanchored search, as CEL's `matches`).
    /// A pattern the generator already compiled once cannot fail here; if it did, the value is
    /// taken as not matching.
    public static func matches(_ value: String, _ pattern: String) -> Bool {
        compiledPatterns.withLock { patterns in
            if patterns[pattern] == nil { patterns[pattern] = try? Regex(pattern) }
            // Matched under the lock: `Regex<AnyRegexOutput>` is not Sendable, and these rules
            // (a few names and ids) are not on a hot path.
            guard let regex = patterns[pattern] ?? nil else { return false }
            return value.contains(regex)
        }
    }

    /// Each pattern compiled once (nil: it did not compile). The generator emits a fixed set of
    /// patterns, so the cache is bounded by the .proto files.
    private static let compiledPatterns = Mutex<[String: Regex<AnyRegexOutput>?]>([:])

    public static func hasPrefix(_ value: String, _ prefix: String) -> Bool {
        value.unicodeScalars.starts(with: prefix.unicodeScalars)
    }

    public static func hasSuffix(_ value: String, _ suffix: String) -> Bool {
        value.unicodeScalars.reversed().starts(with: suffix.unicodeScalars.reversed())
    }

    public static func contains(_ value: String, _ part: String) -> Bool {
        if part.isEmpty { return true }
        let scalars = Array(value.unicodeScalars), needle = Array(part.unicodeScalars)
        guard needle.count <= scalars.count else { return false }
        for start in 0...(scalars.count - needle.count) where Array(scalars[start..<start + needle.count]) == needle { return true }
        return false
    }

    /// protovalidate's `isEmail`: the WHATWG (HTML5) address syntax,
    /// `^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`.
    public static func isEmail(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), at > 0 else { return false }
        let localSpecials = Set(".!#$%&'*+/=?^_`{|}~-".utf8)
        for byte in bytes[..<at] where !(isAlphanumeric(byte) || localSpecials.contains(byte)) { return false }
        let domain = bytes[(at + 1)...]
        if domain.isEmpty { return false }
        for label in domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), let first = label.first, let last = label.last,
                  isAlphanumeric(first), isAlphanumeric(last),
                  label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else { return false }
        }
        return true
    }

    /// protovalidate's UUID syntax (8-4-4-4-12 hexadecimal digits).
    public static func isUUID(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 36 else { return false }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                if byte != UInt8(ascii: "-") { return false }
            } else if !isHexDigit(byte) {
                return false
            }
        }
        return true
    }

    /// Compares a duration with `seconds` + `nanos` (-1, 0, 1).
    public static func compare(_ duration: Google.Protobuf.Duration, seconds: Int64, nanos: Int32) -> Int {
        if duration.seconds != seconds { return duration.seconds < seconds ? -1 : 1 }
        if duration.nanos != nanos { return duration.nanos < nanos ? -1 : 1 }
        return 0
    }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
