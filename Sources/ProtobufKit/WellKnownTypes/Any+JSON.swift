// google.protobuf.Any: packing, unpacking, and the JSON form {"@type": url, ...fields} (or
// {"@type": url, "value": <special form>} for well-known types with a special JSON form).

extension Google.Protobuf.AnyMessage {
    /// Packs `message` with the type URL `type.googleapis.com/<full name>`.
    public init<M: Message>(packing message: M) {
        self.init()
        typeUrl = M.typeURL
        value = message.serializedBytes()
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

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        guard case .object(let members) = value else { throw JSONDecodingError.typeMismatch(expected: "an object", got: value) }
        self.init()
        if members.isEmpty { return }
        guard let typeMember = members.first(where: { $0.key == "@type" }), case .string(let url) = typeMember.value else {
            throw JSONDecodingError("google.protobuf.Any needs a string \"@type\" member")
        }
        guard let type = context.options.typeRegistry.type(named: url) else {
            throw JSONDecodingError("\"@type\" \(url) is not in the type registry").under("@type")
        }
        typeUrl = url
        self.value = try Self.read(type, members: members.filter { $0.key != "@type" }, context: context)
    }

    private static func read<M: Message>(_ type: M.Type, members: [JSONMember], context: JSONDecodingContext) throws -> [UInt8] {
        let message: M
        if M.self is any JSONMessage.Type {
            message = try M(_jsonValue: .object(members), context: context)
        } else {
            guard let inner = members.first(where: { $0.key == "value" }) else {
                throw JSONDecodingError("google.protobuf.Any of \(M.protoMessageName) needs a \"value\" member")
            }
            do {
                message = try M(_jsonValue: inner.value, context: context)
            } catch let error as JSONDecodingError {
                throw error.under("value")
            }
        }
        return message.serializedBytes()
    }
}
