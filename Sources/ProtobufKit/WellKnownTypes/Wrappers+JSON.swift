// The wrapper types (google/protobuf/wrappers.proto): the JSON form of each is the value it wraps.

extension Google.Protobuf.DoubleValue {
    public init(_ value: Double) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.double(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.double())
    }
}

extension Google.Protobuf.FloatValue {
    public init(_ value: Float) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.float(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.float())
    }
}

extension Google.Protobuf.Int64Value {
    public init(_ value: Int64) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.int64(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.int64())
    }
}

extension Google.Protobuf.UInt64Value {
    public init(_ value: UInt64) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.uint64(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.uint64())
    }
}

extension Google.Protobuf.Int32Value {
    public init(_ value: Int32) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.int32(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.int32())
    }
}

extension Google.Protobuf.UInt32Value {
    public init(_ value: UInt32) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.uint32(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.uint32())
    }
}

extension Google.Protobuf.BoolValue {
    public init(_ value: Bool) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.bool(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.bool())
    }
}

extension Google.Protobuf.StringValue {
    public init(_ value: String) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.string(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.string())
    }
}

extension Google.Protobuf.BytesValue {
    public init(_ value: [UInt8]) {
        self.init()
        self.value = value
    }

    public func _writeJSON(to writer: inout JSONWriter) throws { writer.bytes(value) }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init(try scanner.bytes())
    }
}
