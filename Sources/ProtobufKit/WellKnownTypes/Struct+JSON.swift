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

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init()
        try scanner.beginObject()
        while let key = try scanner.nextKey() {
            do {
                fields[key] = try Google.Protobuf.Value(_jsonScanner: &scanner)
            } catch let error as JSONDecodingError {
                throw error.under(key)
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

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init()
        switch scanner.peek() {
        case UInt8(ascii: "n"):
            guard scanner.skipNull() else { throw scanner.syntaxError("invalid literal") }
            kind = .nullValue(.init())
        case UInt8(ascii: "t"), UInt8(ascii: "f"): kind = .boolValue(try scanner.bool())
        case UInt8(ascii: "\""): kind = .stringValue(try scanner.string())
        case UInt8(ascii: "["): kind = .listValue(try Google.Protobuf.ListValue(_jsonScanner: &scanner))
        case UInt8(ascii: "{"): kind = .structValue(try Google.Protobuf.Struct(_jsonScanner: &scanner))
        default: kind = .numberValue(try scanner.double())
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

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init()
        values = try scanner.array(allowNull: true) { try Google.Protobuf.Value(_jsonScanner: &$0) }
    }
}
