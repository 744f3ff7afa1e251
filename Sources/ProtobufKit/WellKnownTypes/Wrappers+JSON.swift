// The wrapper types (google/protobuf/wrappers.proto): the JSON form of each is the value it wraps.

extension Google.Protobuf.DoubleValue {
    public init(_ value: Double) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.double(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.double(value))
    }
}

extension Google.Protobuf.FloatValue {
    public init(_ value: Float) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.float(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.float(value))
    }
}

extension Google.Protobuf.Int64Value {
    public init(_ value: Int64) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.int64(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.int64(value))
    }
}

extension Google.Protobuf.UInt64Value {
    public init(_ value: UInt64) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.uint64(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.uint64(value))
    }
}

extension Google.Protobuf.Int32Value {
    public init(_ value: Int32) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.int32(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.int32(value))
    }
}

extension Google.Protobuf.UInt32Value {
    public init(_ value: UInt32) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.uint32(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.uint32(value))
    }
}

extension Google.Protobuf.BoolValue {
    public init(_ value: Bool) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.bool(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.bool(value))
    }
}

extension Google.Protobuf.StringValue {
    public init(_ value: String) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.string(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.string(value))
    }
}

extension Google.Protobuf.BytesValue {
    public init(_ value: [UInt8]) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.bytes(value) }

    public init(_jsonValue value: JSONValue, context: JSONDecodingContext) throws {
        self.init(try JSONDecode.bytes(value))
    }
}
