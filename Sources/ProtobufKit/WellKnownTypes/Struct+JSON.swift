// google.protobuf.Struct, Value and ListValue: their JSON form is plain JSON (object, any value,
// array).

extension Google.Protobuf.Struct {
    public func _writeJSON(to writer: inout JSONWriter) throws {
        writer.beginObject()
        for (key, value) in _orderedMapEntries(fields) {
            writer.mapKey(key)
            try value._writeJSON(to: &writer)
        }
        writer.endObject()
    }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        guard case .object(let members) = value else { throw JSONDecodingError.typeMismatch(expected: "an object", got: value) }
        self.init()
        for member in members {
            do {
                fields[member.key] = try Google.Protobuf.Value(_jsonValue: member.value, context: context)
            } catch let error as JSONDecodingError {
                throw error.under(member.key)
            }
        }
    }
}

extension Google.Protobuf.Value {
    public func _writeJSON(to writer: inout JSONWriter) throws {
        switch kind {
        case .nullValue?: writer.null()
        case .numberValue(let number)?:
            guard number.isFinite else { throw JSONEncodingError("google.protobuf.Value cannot hold \(number) in JSON") }
            writer.double(number)
        case .stringValue(let string)?: writer.string(string)
        case .boolValue(let bool)?: writer.bool(bool)
        case .structValue(let object)?: try object._writeJSON(to: &writer)
        case .listValue(let list)?: try list._writeJSON(to: &writer)
        case nil: throw JSONEncodingError("google.protobuf.Value has no kind set, so it has no JSON form")
        }
    }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init()
        switch value {
        case .null: kind = .nullValue(.init())
        case .bool(let bool): kind = .boolValue(bool)
        case .integer(let int): kind = .numberValue(Double(int))
        case .number(let number): kind = .numberValue(number)
        case .string(let string): kind = .stringValue(string)
        case .array: kind = .listValue(try Google.Protobuf.ListValue(_jsonValue: value, context: context))
        case .object: kind = .structValue(try Google.Protobuf.Struct(_jsonValue: value, context: context))
        }
    }
}

extension Google.Protobuf.ListValue {
    public func _writeJSON(to writer: inout JSONWriter) throws {
        writer.beginArray()
        for value in values {
            writer.arrayElement()
            try value._writeJSON(to: &writer)
        }
        writer.endArray()
    }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        guard case .array(let elements) = value else { throw JSONDecodingError.typeMismatch(expected: "an array", got: value) }
        self.init()
        for (index, element) in elements.enumerated() {
            do {
                values.append(try Google.Protobuf.Value(_jsonValue: element, context: context))
            } catch let error as JSONDecodingError {
                throw error.under("[\(index)]")
            }
        }
    }
}
