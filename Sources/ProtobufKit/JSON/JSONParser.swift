/// Parses JSON text into a `JSONValue` tree, with the same scanner the mapping uses.
public enum JSONParser {
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        try JSONScanner.scan(bytes, options: JSONDecodingOptions()) { try $0.value() }
    }

    public static func parse(_ text: String) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0) }
    }
}
