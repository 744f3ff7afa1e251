#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads JSON text straight into messages, one token at a time, with no intermediate tree.
///
/// Why hand-written: docs/json-parser.md measures jansson and Foundation's JSONSerialization
/// (each producing a tree the mapping then walks) against swift-protobuf's decoder; both lost,
/// with the parse alone costing more than swift-protobuf's whole decode. This scanner reads the
/// UTF-8 bytes once and hands each value to the field that wants it.
///
/// It is strict RFC 8259: no trailing commas, no comments, no leading zeros, no raw control
/// characters in strings, valid UTF-8 and escapes (surrogate pairs joined), nesting bounded.
/// Syntax errors give the line and column; type errors get the field path from the callers.
public struct JSONScanner {
    let input: UnsafeBufferPointer<UInt8>
    var position = 0
    var depth = 0
    /// Set by `beginObject`/`beginArray`, cleared by the next `nextKey`/`nextElement`: tells
    /// whether a container has just opened, so commas can be checked without a stack.
    var justOpened = false
    /// Depth of the `google.protobuf.Any` object whose `@type` member the message decoder skips.
    var anyTypeDepth = -1

    public let options: JSONDecodingOptions

    /// Deepest nesting of objects and arrays accepted (the mapping recurses per level).
    public static let maxDepth = 100

    init(_ bytes: UnsafeBufferPointer<UInt8>, options: JSONDecodingOptions) {
        self.input = bytes
        self.options = options
    }

    // MARK: Errors

    /// A syntax error at the current position, with line and column (1-based).
    func syntaxError(_ reason: String) -> JSONDecodingError {
        var line = 1
        var column = 1
        for index in 0..<min(position, input.count) {
            if input[index] == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        }
        return JSONDecodingError("invalid JSON at line \(line), column \(column): \(reason)")
    }

    /// A short description of the value that starts here, for type errors.
    mutating func describeValue() -> String {
        skipWhitespace()
        guard position < input.count else { return "the end of the input" }
        let start = position
        switch input[position] {
        case UInt8(ascii: "{"): return "an object"
        case UInt8(ascii: "["): return "an array"
        case UInt8(ascii: "\""):
            if let text = try? string() {
                position = start
                return "\"" + (text.count > 40 ? String(text.prefix(40)) + "..." : text) + "\""
            }
            position = start
            return "a string"
        default:
            var end = position
            while end < input.count, !Self.isDelimiter(input[end]) { end += 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: input[position..<min(end, position + 40)]), as: UTF8.self)
        }
    }

    func typeMismatch(expected: String, got: String) -> JSONDecodingError {
        JSONDecodingError("expected \(expected), got \(got)")
    }

    /// The value here is not the kind the field needs (or the input ended where a value belongs).
    public mutating func mismatch(expected: String) -> JSONDecodingError {
        if peek() == nil { return syntaxError("expected a value, found the end of the input") }
        return typeMismatch(expected: expected, got: describeValue())
    }

    static func isDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: " "), UInt8(ascii: "\n"),
             UInt8(ascii: "\r"), UInt8(ascii: "\t"), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }

    // MARK: Structure

    @inline(__always) mutating func skipWhitespace() {
        while position < input.count {
            switch input[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): position += 1
            default: return
            }
        }
    }

    @inline(__always) mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < input.count ? input[position] : nil
    }

    /// Fails unless only whitespace remains.
    mutating func expectEnd() throws {
        if peek() != nil { throw syntaxError("unexpected data after the value") }
    }

    /// Consumes `null` if it is the next value.
    public mutating func skipNull() -> Bool {
        guard peek() == UInt8(ascii: "n"), position + 4 <= input.count,
              input[position + 1] == UInt8(ascii: "u"), input[position + 2] == UInt8(ascii: "l"),
              input[position + 3] == UInt8(ascii: "l") else { return false }
        position += 4
        return true
    }

    /// Whether the next value is JSON `null` (without consuming it).
    public mutating func nextIsNull() -> Bool {
        let start = position
        defer { position = start }
        return skipNull()
    }

    /// Consumes `{`; `what` names the expected value for the error.
    public mutating func beginObject(_ what: @autoclosure () -> String = "an object") throws {
        guard peek() == UInt8(ascii: "{") else { throw mismatch(expected: what()) }
        position += 1
        depth += 1
        if depth > Self.maxDepth { throw syntaxError("nested more than \(Self.maxDepth) deep") }
        justOpened = true
    }

    /// The next member's key (its `:` consumed), or nil after the closing `}`.
    public mutating func nextKey() throws -> String? {
        let first = justOpened
        justOpened = false
        switch peek() {
        case UInt8(ascii: "}"):
            position += 1
            depth -= 1
            return nil
        case UInt8(ascii: ",") where !first:
            position += 1
            guard peek() == UInt8(ascii: "\"") else { throw syntaxError("expected a member name after ','") }
        case UInt8(ascii: "\"") where first:
            break
        case nil:
            throw syntaxError("the object is not closed")
        default:
            throw syntaxError(first ? "expected a member name or '}'" : "expected ',' or '}' after a member")
        }
        let key = try string()
        guard peek() == UInt8(ascii: ":") else { throw syntaxError("expected ':' after the member name") }
        position += 1
        return key
    }

    /// Consumes `[`.
    public mutating func beginArray(_ what: @autoclosure () -> String = "an array") throws {
        guard peek() == UInt8(ascii: "[") else { throw mismatch(expected: what()) }
        position += 1
        depth += 1
        if depth > Self.maxDepth { throw syntaxError("nested more than \(Self.maxDepth) deep") }
        justOpened = true
    }

    /// Whether another element follows (its `,` consumed); false after the closing `]`.
    public mutating func nextElement() throws -> Bool {
        let first = justOpened
        justOpened = false
        switch peek() {
        case UInt8(ascii: "]"):
            position += 1
            depth -= 1
            return false
        case UInt8(ascii: ",") where !first:
            position += 1
            return true
        case nil:
            throw syntaxError("the array is not closed")
        default:
            if first { return true }
            throw syntaxError("expected ',' or ']' after an element")
        }
    }

    /// Skips one value of any kind, checking its syntax.
    public mutating func skipValue() throws {
        switch peek() {
        case UInt8(ascii: "{"):
            try beginObject()
            while try nextKey() != nil { try skipValue() }
        case UInt8(ascii: "["):
            try beginArray()
            while try nextElement() { try skipValue() }
        case UInt8(ascii: "\""):
            _ = try string()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            _ = try bool()
        case UInt8(ascii: "n"):
            if !skipNull() { throw syntaxError("invalid literal") }
        case nil:
            throw syntaxError("expected a value, found the end of the input")
        default:
            _ = try numberToken()
        }
    }

    // MARK: Scalars

    public mutating func bool() throws -> Bool {
        skipWhitespace()
        if matchLiteral("true") { return true }
        if matchLiteral("false") { return false }
        throw mismatch(expected: "true or false")
    }

    mutating func matchLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard position + count <= input.count else { return false }
        let matches = literal.withUTF8Buffer { literalBytes in
            (0..<count).allSatisfy { input[position + $0] == literalBytes[$0] }
        }
        guard matches, position + count == input.count || Self.isDelimiter(input[position + count]) else { return false }
        position += count
        return true
    }

    /// A JSON string value (escapes decoded, UTF-8 checked).
    public mutating func string() throws -> String {
        guard peek() == UInt8(ascii: "\"") else { throw mismatch(expected: "a string") }
        position += 1
        let start = position
        // Fast path: no escapes.
        while position < input.count {
            let byte = input[position]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: input[start..<position])
                position += 1
                guard let text = String(validating: slice, as: UTF8.self) else {
                    position = start
                    throw syntaxError("string is not valid UTF-8")
                }
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw syntaxError("unescaped control character in a string") }
            position += 1
        }
        var buffer = Array(UnsafeBufferPointer(rebasing: input[start..<position]))
        while position < input.count {
            let byte = input[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: buffer, as: UTF8.self) else { throw syntaxError("string is not valid UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                guard position < input.count else { break }
                let escape = input[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard position + 1 < input.count, input[position] == UInt8(ascii: "\\"), input[position + 1] == UInt8(ascii: "u") else {
                            throw syntaxError("unpaired surrogate in \\u escape")
                        }
                        position += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw syntaxError("unpaired surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw syntaxError("unpaired surrogate in \\u escape")
                    }
                    buffer.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
                default:
                    throw syntaxError("invalid escape '\\\(Character(Unicode.Scalar(escape)))'")
                }
            default:
                if byte < 0x20 { throw syntaxError("unescaped control character in a string") }
                buffer.append(byte)
            }
        }
        throw syntaxError("the string is not closed")
    }

    mutating func hex4() throws -> UInt32 {
        guard position + 4 <= input.count else { throw syntaxError("incomplete \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = input[position]
            position += 1
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw syntaxError("invalid \\u escape")
            }
            value = value << 4 | digit
        }
        return value
    }

    /// A number token: its byte range, and whether it is a plain integer (no fraction/exponent).
    mutating func numberToken() throws -> (range: Range<Int>, isInteger: Bool) {
        skipWhitespace()
        let start = position
        var isInteger = true
        if position < input.count, input[position] == UInt8(ascii: "-") { position += 1 }
        guard position < input.count, isDigit(input[position]) else {
            position = start
            throw syntaxError("expected a value")
        }
        if input[position] == UInt8(ascii: "0") {
            position += 1
            if position < input.count, isDigit(input[position]) { throw syntaxError("numbers cannot have leading zeros") }
        } else {
            while position < input.count, isDigit(input[position]) { position += 1 }
        }
        if position < input.count, input[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard position < input.count, isDigit(input[position]) else { throw syntaxError("expected digits after '.'") }
            while position < input.count, isDigit(input[position]) { position += 1 }
        }
        if position < input.count, input[position] == UInt8(ascii: "e") || input[position] == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if position < input.count, input[position] == UInt8(ascii: "+") || input[position] == UInt8(ascii: "-") { position += 1 }
            guard position < input.count, isDigit(input[position]) else { throw syntaxError("expected digits in the exponent") }
            while position < input.count, isDigit(input[position]) { position += 1 }
        }
        if position < input.count, !Self.isDelimiter(input[position]) { throw syntaxError("invalid number") }
        return (start..<position, isInteger)
    }

    @inline(__always) func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// Parses a decimal integer from ASCII bytes; nil if it is not one or overflows 64 bits.
    static func parseInteger(_ text: UnsafeBufferPointer<UInt8>) -> (negative: Bool, magnitude: UInt64)? {
        var index = 0
        var negative = false
        if index < text.count, text[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        guard index < text.count else { return nil }
        var magnitude: UInt64 = 0
        while index < text.count {
            let byte = text[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            magnitude = sum
            index += 1
        }
        return (negative, magnitude)
    }

    /// Parses a double with strtod from ASCII bytes; nil unless all of it is a number.
    static func parseDouble(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        guard !text.isEmpty, text.count < 512 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: text.count + 1) { buffer in
            for index in 0..<text.count { buffer[index] = CChar(bitPattern: text[index]) }
            buffer[text.count] = 0
            var end: UnsafeMutablePointer<CChar>?
            let value = strtod(buffer.baseAddress!, &end)
            guard let end, end == buffer.baseAddress! + text.count else { return nil }
            return value
        }
    }

    /// An integer of type `T`, from a JSON number or a string holding one.
    mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ typeName: String) throws -> T {
        let start = position
        switch peek() ?? 0 {
        case UInt8(ascii: "\""):
            let text = try string()
            var utf8 = Array(text.utf8)
            return try utf8.withUnsafeMutableBufferPointer { buffer in
                try convertInteger(UnsafeBufferPointer(buffer), isInteger: !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
                                   type, typeName, original: "\"\(text)\"", start: start)
            }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let token = try numberToken()
            let slice = UnsafeBufferPointer(rebasing: input[token.range])
            return try convertInteger(slice, isInteger: token.isInteger, type, typeName,
                                      original: String(decoding: slice, as: UTF8.self), start: start)
        default:
            throw mismatch(expected: typeName)
        }
    }

    private func convertInteger<T: FixedWidthInteger>(_ text: UnsafeBufferPointer<UInt8>, isInteger: Bool, _ type: T.Type,
                                                      _ typeName: String, original: String, start: Int) throws -> T {
        if isInteger, let parsed = Self.parseInteger(text) {
            if parsed.negative {
                guard T.isSigned, parsed.magnitude <= UInt64(T.max) + 1 else { throw JSONDecodingError("\(original) is out of range for \(typeName)") }
                return T(truncatingIfNeeded: 0 &- parsed.magnitude)
            }
            guard parsed.magnitude <= UInt64(T.max) else { throw JSONDecodingError("\(original) is out of range for \(typeName)") }
            return T(parsed.magnitude)
        }
        // Exponent or fraction forms ("1e2", "5.0") are accepted when the value is integral.
        guard let double = Self.parseDouble(text) else { throw JSONDecodingError("expected \(typeName), got \(original)") }
        guard double.isFinite, double == double.rounded() else { throw JSONDecodingError("\(original) is not a valid \(typeName)") }
        guard let value = T(exactly: double) else { throw JSONDecodingError("\(original) is out of range for \(typeName)") }
        return value
    }

    public mutating func int32() throws -> Int32 { try integer(Int32.self, "an int32") }
    public mutating func uint32() throws -> UInt32 { try integer(UInt32.self, "a uint32") }
    public mutating func int64() throws -> Int64 { try integer(Int64.self, "an int64") }
    public mutating func uint64() throws -> UInt64 { try integer(UInt64.self, "a uint64") }

    /// A double from a JSON number, or a string: a number, "NaN", "Infinity" or "-Infinity".
    public mutating func double() throws -> Double {
        switch peek() ?? 0 {
        case UInt8(ascii: "\""):
            let text = try string()
            switch text {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                var utf8 = Array(text.utf8)
                let parsed = utf8.withUnsafeMutableBufferPointer { Self.parseDouble(UnsafeBufferPointer($0)) }
                guard let value = parsed, value.isFinite, !text.hasPrefix(" ") else {
                    throw JSONDecodingError("expected a number, got \"\(text)\"")
                }
                return value
            }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let token = try numberToken()
            let slice = UnsafeBufferPointer(rebasing: input[token.range])
            guard let value = Self.parseDouble(slice) else { throw syntaxError("invalid number") }
            guard value.isFinite else { throw JSONDecodingError("\(String(decoding: slice, as: UTF8.self)) is out of range for a double") }
            return value
        default:
            throw mismatch(expected: "a number")
        }
    }

    public mutating func float() throws -> Float {
        let value = try double()
        if value.isFinite && abs(value) > Double(Float.greatestFiniteMagnitude) {
            throw JSONDecodingError("\(value) is out of range for a float")
        }
        return Float(value)
    }

    /// Bytes: standard or URL-safe base64, padded or not.
    public mutating func bytes() throws -> [UInt8] {
        guard peek() == UInt8(ascii: "\"") else { throw mismatch(expected: "a base64 string") }
        let text = try string()
        guard let decoded = Base64.decode(text) else { throw JSONDecodingError("expected base64, got \"\(text)\"") }
        return decoded
    }

    // MARK: Composite values

    /// An enum value by name or number; nil for an unknown name when unknown fields are ignored.
    public mutating func enumValue<E: Enum>(_ type: E.Type) throws -> E? {
        switch peek() ?? 0 {
        case UInt8(ascii: "\""):
            let name = try string()
            if let number = E.protoNames.number(for: name) { return E(rawValue: number) }
            if options.ignoreUnknownFields { return nil }
            throw JSONDecodingError("\"\(name)\" is not a value of \(E.protoNames.enumName)")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return E(rawValue: try int32())
        default:
            throw mismatch(expected: "an enum name or number")
        }
    }

    /// `google.protobuf.NullValue`, whose JSON form is `null`.
    public mutating func nullValue<E: Enum>() throws -> E {
        if skipNull() { return E() }
        let start = position
        if peek() == UInt8(ascii: "\""), (try? string()) == "NULL_VALUE" { return E() }
        position = start
        if let number = try? int32(), number == 0 { return E() }
        position = start
        throw mismatch(expected: "null")
    }

    /// A repeated field: a JSON array. `allowNull` is for `google.protobuf.Value` elements.
    public mutating func array<T>(allowNull: Bool = false, _ element: (inout JSONScanner) throws -> T) throws -> [T] {
        try beginArray()
        var result: [T] = []
        var index = 0
        while try nextElement() {
            do {
                if !allowNull, nextIsNull() { throw JSONDecodingError("null is not allowed in a repeated field") }
                result.append(try element(&self))
            } catch let error as JSONDecodingError {
                throw error.under("[\(index)]")
            }
            index += 1
        }
        return result
    }

    /// A map field: a JSON object whose member names are the keys.
    public mutating func map<K: Hashable, V>(allowNull: Bool = false, key: (String) throws -> K,
                                             _ value: (inout JSONScanner) throws -> V) throws -> [K: V] {
        try beginObject()
        var result: [K: V] = [:]
        while let name = try nextKey() {
            do {
                if !allowNull, nextIsNull() { throw JSONDecodingError("null is not allowed as a map value") }
                result[try key(name)] = try value(&self)
            } catch let error as JSONDecodingError {
                throw error.under("[\(name.debugDescription)]")
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
    public static func mapKey_int32(_ key: String) throws -> Int32 { try mapKey(key, Int32.self, "an int32") }
    public static func mapKey_uint32(_ key: String) throws -> UInt32 { try mapKey(key, UInt32.self, "a uint32") }
    public static func mapKey_int64(_ key: String) throws -> Int64 { try mapKey(key, Int64.self, "an int64") }
    public static func mapKey_uint64(_ key: String) throws -> UInt64 { try mapKey(key, UInt64.self, "a uint64") }

    static func mapKey<T: FixedWidthInteger>(_ key: String, _ type: T.Type, _ typeName: String) throws -> T {
        guard let value = T(key) else { throw JSONDecodingError("map key \(key.debugDescription) is not \(typeName)") }
        return value
    }

    /// Any JSON value, as a tree (for callers that need to look at JSON generically).
    public mutating func value() throws -> JSONValue {
        switch peek() {
        case UInt8(ascii: "{"):
            try beginObject()
            var members: [JSONMember] = []
            while let key = try nextKey() { members.append(JSONMember(key, try value())) }
            return .object(members)
        case UInt8(ascii: "["):
            try beginArray()
            var elements: [JSONValue] = []
            while try nextElement() { elements.append(try value()) }
            return .array(elements)
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            return .bool(try bool())
        case UInt8(ascii: "n"):
            if skipNull() { return .null }
            throw syntaxError("invalid literal")
        case nil:
            throw syntaxError("expected a value, found the end of the input")
        default:
            let token = try numberToken()
            let slice = UnsafeBufferPointer(rebasing: input[token.range])
            if token.isInteger, let parsed = Self.parseInteger(slice),
               parsed.negative ? parsed.magnitude <= UInt64(Int64.max) + 1 : parsed.magnitude <= UInt64(Int64.max) {
                return .integer(parsed.negative ? (parsed.magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(parsed.magnitude)) : Int64(parsed.magnitude))
            }
            guard let double = Self.parseDouble(slice) else { throw syntaxError("invalid number") }
            return .number(double)
        }
    }
}

extension JSONScanner {
    /// Runs `body` with a scanner over `bytes`, then checks nothing but whitespace follows.
    static func scan<Result>(_ raw: UnsafeRawBufferPointer, options: JSONDecodingOptions,
                             _ body: (inout JSONScanner) throws -> Result) throws -> Result {
        var scanner = JSONScanner(raw.bindMemory(to: UInt8.self), options: options)
        guard scanner.peek() != nil else { throw scanner.syntaxError("expected a value, found the end of the input") }
        let result = try body(&scanner)
        try scanner.expectEnd()
        return result
    }
}
