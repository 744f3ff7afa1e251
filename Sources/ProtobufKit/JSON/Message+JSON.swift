// Entry points of the canonical proto3 JSON mapping.

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
        var text = text
        self = try text.withUTF8 { utf8 in
            try JSONScanner.scan(UnsafeRawBufferPointer(utf8), options: options) { try Self(_jsonScanner: &$0) }
        }
    }

    /// Reads a message from UTF-8 proto3 JSON.
    public init(jsonUTF8Bytes bytes: some Collection<UInt8>, options: JSONDecodingOptions = JSONDecodingOptions()) throws {
        let decode = { (raw: UnsafeRawBufferPointer) in
            try JSONScanner.scan(raw, options: options) { try Self(_jsonScanner: &$0) }
        }
        if let result = try bytes.withContiguousStorageIfAvailable({ try decode(UnsafeRawBufferPointer($0)) }) {
            self = result
        } else {
            self = try Array(bytes).withUnsafeBytes(decode)
        }
    }

    /// Reads a message from a JSON tree (for example one assembled from an HTTP request).
    public init(jsonValue value: JSONValue, options: JSONDecodingOptions = JSONDecodingOptions()) throws {
        var writer = JSONWriter()
        writer.value(value)
        try self.init(jsonUTF8Bytes: writer.bytes, options: options)
    }
}
