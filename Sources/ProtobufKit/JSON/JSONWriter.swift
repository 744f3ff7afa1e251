/// Writes canonical proto3 JSON into a byte buffer, with no whitespace.
///
/// Generated code calls `key` before each member and `arrayElement` before each array element;
/// the writer inserts commas by looking at the last byte written, so nesting needs no stack.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    public let options: JSONEncodingOptions

    public init(options: JSONEncodingOptions = JSONEncodingOptions()) {
        self.options = options
        bytes.reserveCapacity(256)
    }

    @inline(__always) private mutating func separator() {
        if let last = bytes.last, last != UInt8(ascii: "{"), last != UInt8(ascii: "["), last != UInt8(ascii: ":") {
            bytes.append(UInt8(ascii: ","))
        }
    }

    public mutating func beginObject() { bytes.append(UInt8(ascii: "{")) }
    public mutating func endObject() { bytes.append(UInt8(ascii: "}")) }
    public mutating func beginArray() { bytes.append(UInt8(ascii: "[")) }
    public mutating func endArray() { bytes.append(UInt8(ascii: "]")) }
    public mutating func arrayElement() { separator() }

    /// Writes a member name: the JSON name, or the proto name when the options say so.
    public mutating func key(_ jsonName: StaticString, _ protoName: StaticString) {
        separator()
        let name = options.preserveProtoFieldNames ? protoName : jsonName
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    /// Writes a member name given at run time (map keys, `@type`, Struct keys).
    public mutating func mapKey(_ name: String) {
        separator()
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func null() { appendASCII("null") }
    public mutating func bool(_ value: Bool) { appendASCII(value ? "true" : "false") }
    public mutating func int32(_ value: Int32) { appendASCII(String(value)) }
    public mutating func uint32(_ value: UInt32) { appendASCII(String(value)) }
    /// 64-bit integers are strings in proto3 JSON (JavaScript numbers lose precision past 2^53).
    public mutating func int64(_ value: Int64) { appendASCII("\"" + String(value) + "\"") }
    public mutating func uint64(_ value: UInt64) { appendASCII("\"" + String(value) + "\"") }

    public mutating func double(_ value: Double) {
        if value.isNaN { appendASCII("\"NaN\"") }
        else if value.isInfinite { appendASCII(value < 0 ? "\"-Infinity\"" : "\"Infinity\"") }
        else if value == 0 && value.sign == .minus { appendASCII("-0.0") }  // "-0" would parse as integer 0
        else if value == value.rounded(.towardZero) && abs(value) < 1e15 { appendASCII(String(Int64(value))) }
        else { appendASCII(value.description) }
    }

    public mutating func float(_ value: Float) {
        if value.isNaN { appendASCII("\"NaN\"") }
        else if value.isInfinite { appendASCII(value < 0 ? "\"-Infinity\"" : "\"Infinity\"") }
        else if value == 0 && value.sign == .minus { appendASCII("-0.0") }
        else if value == value.rounded(.towardZero) && abs(value) < 1e7 { appendASCII(String(Int64(value))) }
        else { appendASCII(value.description) }
    }

    public mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them whole instead of byte by byte.
        var value = value
        let copied = value.withUTF8 { utf8 -> Bool in
            guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case 0x0A: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case 0x08: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "f"))
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Bytes are standard base64 with padding.
    public mutating func bytes(_ value: [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        Base64.encode(value, into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func enumValue<E: Enum>(_ value: E) {
        if !options.enumsAsIntegers, let name = value.protoName {
            string(name)
        } else {
            int32(value.rawValue)
        }
    }

    /// Writes a JSON tree.
    public mutating func value(_ value: JSONValue) {
        switch value {
        case .null: null()
        case .bool(let bool): self.bool(bool)
        case .integer(let int): appendASCII(String(int))
        case .number(let number): double(number)
        case .string(let string): self.string(string)
        case .array(let elements):
            beginArray()
            for element in elements { arrayElement(); self.value(element) }
            endArray()
        case .object(let members):
            beginObject()
            for member in members { mapKey(member.key); self.value(member.value) }
            endObject()
        }
    }

    /// Appends JSON text that is already valid (used by `Any`).
    mutating func appendRaw(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    private mutating func appendASCII(_ text: String) { bytes.append(contentsOf: text.utf8) }
}
