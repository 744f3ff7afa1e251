// google.protobuf.Any: packing, unpacking, and the JSON form {"@type": url, ...fields} (or
// {"@type": url, "value": <special form>} for well-known types with a special JSON form).

extension Google.Protobuf.AnyMessage {
    /// Packs `message` with the type URL `type.googleapis.com/<full name>`.
    /// - Throws: `ProtobufEncodingError` when the message cannot be encoded.
    public init<M: Message>(packing message: M) throws {
        self.init()
        typeUrl = M.typeURL
        value = try message.serializedBytes()
    }

    /// Whether this Any holds a `M`.
    public func isA<M: Message>(_ type: M.Type) -> Bool {
        typeUrl.split(separator: "/").last.map(String.init) == M.protoMessageName
    }

    /// Decodes the packed message as `M`; throws if it holds another type.
    public func unpack<M: Message>(as type: M.Type = M.self) throws -> M {
        guard isA(type) else {
            throw ProtobufDecodingError(.malformed, "google.protobuf.Any holds \(typeUrl), not \(M.protoMessageName)")
        }
        return try M(serializedBytes: value)
    }

    public func _writeJSON(to writer: inout JSONWriter) throws {
        if typeUrl.isEmpty && value.isEmpty {
            writer.beginObject()
            writer.endObject()
            return
        }
        guard let type = writer.options.typeRegistry.type(named: typeUrl) else {
            throw JSONEncodingError("google.protobuf.Any holds \(typeUrl), which is not in the type registry")
        }
        try Self.write(type, bytes: value, url: typeUrl, to: &writer)
    }

    private static func write<M: Message>(_ type: M.Type, bytes: [UInt8], url: String, to writer: inout JSONWriter) throws {
        let message = try M(serializedBytes: bytes)
        writer.beginObject()
        writer.mapKey("@type")
        writer.string(url)
        if let fieldsMessage = message as? any JSONMessage {
            try fieldsMessage._writeJSONFields(to: &writer)
        } else {
            writer.mapKey("value")
            try message._writeJSON(to: &writer)
        }
        writer.endObject()
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init()
        // First pass: find "@type" (members may come in any order), then decode from the start.
        let start = scanner.position
        let objectDepth = scanner.depth + 1
        try scanner.beginObject()
        var url: String?
        var memberCount = 0
        while let key = try scanner.nextKey() {
            memberCount += 1
            if key == "@type" {
                guard scanner.peek() == UInt8(ascii: "\"") else { throw JSONDecodingError("\"@type\" must be a string").under("@type") }
                url = try scanner.string()
            } else {
                try scanner.skipValue()
            }
        }
        if memberCount == 0 { return }
        guard let url else { throw JSONDecodingError("google.protobuf.Any needs a string \"@type\" member") }
        guard let type = scanner.options.typeRegistry.type(named: url) else {
            throw JSONDecodingError("\"\(url)\" is not in the type registry").under("@type")
        }
        let end = scanner.position
        let savedDepth = scanner.depth
        scanner.position = start
        typeUrl = url
        value = try Self.read(type, scanner: &scanner, objectDepth: objectDepth)
        scanner.position = end
        scanner.depth = savedDepth
    }

    private static func read<M: Message>(_ type: M.Type, scanner: inout JSONScanner, objectDepth: Int) throws -> [UInt8] {
        if M.self is any JSONMessage.Type {
            // The packed message's fields sit beside "@type", which the message decoder skips.
            let outerAnyDepth = scanner.anyTypeDepth
            scanner.anyTypeDepth = objectDepth
            defer { scanner.anyTypeDepth = outerAnyDepth }
            return try binary(M(_jsonScanner: &scanner))
        }
        // A well-known type with a special form: {"@type": ..., "value": <form>}.
        try scanner.beginObject()
        var message: M?
        while let key = try scanner.nextKey() {
            switch key {
            case "@type":
                try scanner.skipValue()
            case "value":
                do {
                    message = try M(_jsonScanner: &scanner)
                } catch let error as JSONDecodingError {
                    throw error.under("value")
                }
            default:
                throw JSONDecodingError("google.protobuf.Any of \(M.protoMessageName) has only \"@type\" and \"value\"").under(key)
            }
        }
        guard let message else { throw JSONDecodingError("google.protobuf.Any of \(M.protoMessageName) needs a \"value\" member") }
        return try binary(message)
    }

    /// The packed form of a message read from JSON: a string holding U+0000 is a JSON error
    /// naming the field, like any other value the binary form cannot carry.
    private static func binary<M: Message>(_ message: M) throws -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch let error as ProtobufEncodingError {
            throw JSONDecodingError(error.message)
        }
    }
}
