import ProtobufCodeGen
import ProtobufKit

extension DynamicCodec {
    /// The canonical proto3 JSON of the binary `bytes` read as a `type` message, written as
    /// ProtobufKit writes generated messages: plain fields in declaration order, then oneof members, map entries by key,
    /// 64-bit integers as strings, unknown fields left out.
    public func json(from bytes: some Collection<UInt8>, as type: String, options: JSONEncodingOptions = JSONEncodingOptions()) throws -> [UInt8] {
        var writer = JSONWriter(options: options)
        try writeMessage(ArraySlice(bytes), type: type, to: &writer, depth: 0)
        return writer.bytes
    }

    func writeMessage(_ bytes: ArraySlice<UInt8>, type: String, to writer: inout JSONWriter, depth: Int) throws {
        guard depth < Self.maxDepth else { throw DynamicCodecError("\(type): nested more than \(Self.maxDepth) deep") }
        if let wellKnown = WellKnownType.byName[type] {
            try wellKnown.writeJSON(bytes, to: &writer)
            return
        }
        if type == "google.protobuf.Any" {
            try writeAny(bytes, to: &writer, depth: depth)
            return
        }
        let message = try pool.message(type)
        var values: [Int32: [WireValue]] = [:]
        var reader = WireReader(bytes)
        while !reader.isAtEnd {
            do {
                let (number, value) = try reader.field()
                values[number, default: []].append(value)
            } catch let error as DynamicCodecError {
                throw DynamicCodecError("\(type): \(error.description)")
            }
        }
        writer.beginObject()
        // The generated code's order: the plain fields as declared, then each oneof's member.
        let plain = message.fields.filter { $0.oneofIndex == nil }
        let oneofMembers = message.oneofs.indices.flatMap { index in message.fields.filter { $0.oneofIndex == index } }
        for field in plain + oneofMembers {
            do {
                try writeField(field, values[field.number] ?? [], to: &writer, depth: depth)
            } catch let error as DynamicCodecError {
                throw DynamicCodecError("\(type).\(field.name): \(error.description)")
            }
        }
        writer.endObject()
    }

    func key(_ field: ProtoField, _ writer: inout JSONWriter) {
        writer.mapKey(writer.options.preserveProtoFieldNames ? field.name : field.jsonName)
    }

    func writeField(_ field: ProtoField, _ raw: [WireValue], to writer: inout JSONWriter, depth: Int) throws {
        let printDefaults = writer.options.alwaysPrintFieldsWithNoPresence
        if field.type == .message, let entry = pool.messages[field.typeName], entry.isMapEntry {
            guard !raw.isEmpty || printDefaults else { return }
            key(field, &writer)
            try writeMap(raw, entry: entry, to: &writer, depth: depth)
            return
        }
        if field.isRepeated {
            var elements: [WireValue] = []
            for value in raw {
                if case .bytes(let payload) = value, Self.isPackable(field.type) {
                    elements += try Self.unpack(payload, field.type)
                } else {
                    elements.append(value)
                }
            }
            guard !elements.isEmpty || printDefaults else { return }
            key(field, &writer)
            writer.beginArray()
            for element in elements {
                writer.arrayElement()
                try writeValue(field, element, to: &writer, depth: depth)
            }
            writer.endArray()
            return
        }
        if field.type == .message {
            guard !raw.isEmpty else { return }
            // A message field given more than once is the merge of its parts: their concatenation.
            var merged: [UInt8] = []
            for value in raw {
                guard case .bytes(let payload) = value else { throw DynamicCodecError("expected a length-delimited message") }
                merged += payload
            }
            key(field, &writer)
            try writeMessage(merged[...], type: field.typeName, to: &writer, depth: depth + 1)
            return
        }
        let hasPresence = field.oneofIndex != nil
        guard var value = raw.last else {
            if printDefaults && !hasPresence {
                key(field, &writer)
                try writeDefault(field, to: &writer)
            }
            return
        }
        // A repeated scalar's packed form read into a singular field: its last element counts.
        if case .bytes(let payload) = value, Self.isPackable(field.type), let last = try Self.unpack(payload, field.type).last { value = last }
        if !hasPresence && !printDefaults && Self.isDefault(value, field.type) { return }
        key(field, &writer)
        try writeValue(field, value, to: &writer, depth: depth)
    }

    func writeValue(_ field: ProtoField, _ value: WireValue, to writer: inout JSONWriter, depth: Int) throws {
        switch (field.type, value) {
        case (.double, .fixed64(let bits)): writer.double(Double(bitPattern: bits))
        case (.float, .fixed32(let bits)): writer.float(Float(bitPattern: bits))
        case (.int32, .varint(let raw)): writer.int32(Int32(truncatingIfNeeded: raw))
        case (.int64, .varint(let raw)): writer.int64(Int64(bitPattern: raw))
        case (.uint32, .varint(let raw)): writer.uint32(UInt32(truncatingIfNeeded: raw))
        case (.uint64, .varint(let raw)): writer.uint64(raw)
        case (.sint32, .varint(let raw)):
            let half = UInt32(truncatingIfNeeded: raw)
            writer.int32(Int32(bitPattern: (half >> 1) ^ (0 &- (half & 1))))
        case (.sint64, .varint(let raw)): writer.int64(Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))))
        case (.fixed32, .fixed32(let raw)): writer.uint32(raw)
        case (.sfixed32, .fixed32(let raw)): writer.int32(Int32(bitPattern: raw))
        case (.fixed64, .fixed64(let raw)): writer.uint64(raw)
        case (.sfixed64, .fixed64(let raw)): writer.int64(Int64(bitPattern: raw))
        case (.bool, .varint(let raw)): writer.bool(raw != 0)
        case (.string, .bytes(let payload)):
            guard let text = String(validating: payload, as: UTF8.self) else { throw DynamicCodecError("a string that is not valid UTF-8") }
            writer.string(text)
        case (.bytes, .bytes(let payload)): writer.bytes(Array(payload))
        case (.enum, .varint(let raw)): writeEnum(field.typeName, Int32(truncatingIfNeeded: raw), to: &writer)
        case (.message, .bytes(let payload)): try writeMessage(payload, type: field.typeName, to: &writer, depth: depth + 1)
        default:
            throw DynamicCodecError("the wire type does not match the field's type (\(field.type))")
        }
    }

    func writeEnum(_ type: String, _ number: Int32, to writer: inout JSONWriter) {
        if type == "google.protobuf.NullValue" { writer.null(); return }
        if !writer.options.enumsAsIntegers, let name = pool.enums[type]?.values.first(where: { $0.number == number })?.name {
            writer.string(name)
        } else {
            writer.int32(number)
        }
    }

    func writeDefault(_ field: ProtoField, to writer: inout JSONWriter) throws {
        switch field.type {
        case .double, .float, .int32, .uint32, .sint32, .fixed32, .sfixed32: writer.int32(0)
        case .int64, .uint64, .sint64, .fixed64, .sfixed64: writer.int64(0)
        case .bool: writer.bool(false)
        case .string: writer.string("")
        case .bytes: writer.bytes([])
        case .enum: writeEnum(field.typeName, 0, to: &writer)
        case .message, .group: writer.null()
        }
    }

    func writeMap(_ raw: [WireValue], entry: ProtoMessage, to writer: inout JSONWriter, depth: Int) throws {
        let keyField = entry.fields[0]
        let valueField = entry.fields[1]
        // Last entry for a key wins; keys are written in ProtobufKit's deterministic order.
        var entries: [MapKey: WireValue?] = [:]
        for value in raw {
            guard case .bytes(let payload) = value else { throw DynamicCodecError("a map entry that is not length-delimited") }
            var reader = WireReader(payload)
            var keyValue: WireValue?
            var entryValue: WireValue?
            while !reader.isAtEnd {
                let (number, field) = try reader.field()
                if number == 1 { keyValue = field } else if number == 2 { entryValue = field }
            }
            entries[try MapKey(keyValue, keyField)] = entryValue
        }
        writer.beginObject()
        for key in entries.keys.sorted() {
            writer.mapKey(key.text)
            if let value = entries[key] ?? nil {
                try writeValue(valueField, value, to: &writer, depth: depth)
            } else if valueField.type == .message {
                try writeMessage([], type: valueField.typeName, to: &writer, depth: depth + 1)
            } else {
                try writeDefault(valueField, to: &writer)
            }
        }
        writer.endObject()
    }

    func writeAny(_ bytes: ArraySlice<UInt8>, to writer: inout JSONWriter, depth: Int) throws {
        var url = ""
        var payload: ArraySlice<UInt8> = []
        var reader = WireReader(bytes)
        while !reader.isAtEnd {
            let (number, value) = try reader.field()
            if number == 1, case .bytes(let text) = value { url = String(decoding: text, as: UTF8.self) }
            if number == 2, case .bytes(let data) = value { payload = data }
        }
        writer.beginObject()
        if url.isEmpty { writer.endObject(); return }
        let typeName = String(url.split(separator: "/").last ?? "")
        writer.mapKey("@type")
        writer.string(url)
        if WellKnownType.isValueFormInAny(typeName) {
            writer.mapKey("value")
            try writeMessage(payload, type: typeName, to: &writer, depth: depth + 1)
        } else if pool.messages[typeName] != nil {
            // The embedded message's members follow `@type` in the same object.
            var inner = JSONWriter(options: writer.options)
            try writeMessage(payload, type: typeName, to: &inner, depth: depth + 1)
            if case .object(let members) = try JSONParser.parse(inner.bytes) {
                for member in members {
                    writer.mapKey(member.key)
                    writer.value(member.value)
                }
            }
        } else {
            throw DynamicCodecError("a google.protobuf.Any holds \(typeName), which is not described")
        }
        writer.endObject()
    }

    // MARK: Scalars

    static func isPackable(_ type: ProtoFieldType) -> Bool {
        switch type {
        case .string, .bytes, .message, .group: return false
        default: return true
        }
    }

    static func unpack(_ payload: ArraySlice<UInt8>, _ type: ProtoFieldType) throws -> [WireValue] {
        var reader = WireReader(payload)
        var values: [WireValue] = []
        while !reader.isAtEnd {
            switch type {
            case .double, .fixed64, .sfixed64:
                let raw = try reader.take(8)
                values.append(.fixed64(raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }))
            case .float, .fixed32, .sfixed32:
                let raw = try reader.take(4)
                values.append(.fixed32(raw.reversed().reduce(0) { $0 << 8 | UInt32($1) }))
            default:
                values.append(.varint(try reader.varint()))
            }
        }
        return values
    }

    static func isDefault(_ value: WireValue, _ type: ProtoFieldType) -> Bool {
        switch value {
        case .varint(let raw): return raw == 0
        // -0.0 has a sign bit set and counts as set, as in ProtobufKit.
        case .fixed64(let raw): return raw == 0
        case .fixed32(let raw): return raw == 0
        case .bytes(let payload): return payload.isEmpty
        }
    }
}

/// A map key, ordered as ProtobufKit orders them (integers by value, false first, strings by
/// their UTF-8 bytes), and its JSON text.
struct MapKey: Hashable, Comparable {
    enum Value: Hashable {
        case signed(Int64)
        case unsigned(UInt64)
        case bool(Bool)
        case string([UInt8])
    }
    let value: Value

    init(_ wire: WireValue?, _ field: ProtoField) throws {
        switch (field.type, wire) {
        case (.string, nil): value = .string([])
        case (.string, .bytes(let payload)?): value = .string(Array(payload))
        case (.bool, nil): value = .bool(false)
        case (.bool, .varint(let raw)?): value = .bool(raw != 0)
        case (.int32, .varint(let raw)?): value = .signed(Int64(Int32(truncatingIfNeeded: raw)))
        case (.int64, .varint(let raw)?): value = .signed(Int64(bitPattern: raw))
        case (.sint32, .varint(let raw)?):
            let half = UInt32(truncatingIfNeeded: raw)
            value = .signed(Int64(Int32(bitPattern: (half >> 1) ^ (0 &- (half & 1)))))
        case (.sint64, .varint(let raw)?): value = .signed(Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1))))
        case (.sfixed32, .fixed32(let raw)?): value = .signed(Int64(Int32(bitPattern: raw)))
        case (.sfixed64, .fixed64(let raw)?): value = .signed(Int64(bitPattern: raw))
        case (.uint32, .varint(let raw)?): value = .unsigned(UInt64(UInt32(truncatingIfNeeded: raw)))
        case (.uint64, .varint(let raw)?): value = .unsigned(raw)
        case (.fixed32, .fixed32(let raw)?): value = .unsigned(UInt64(raw))
        case (.fixed64, .fixed64(let raw)?): value = .unsigned(raw)
        case (.int32, nil), (.int64, nil), (.sint32, nil), (.sint64, nil), (.sfixed32, nil), (.sfixed64, nil): value = .signed(0)
        case (.uint32, nil), (.uint64, nil), (.fixed32, nil), (.fixed64, nil): value = .unsigned(0)
        default: throw DynamicCodecError("a map key of type \(field.type) with the wrong wire type")
        }
    }

    var text: String {
        switch value {
        case .signed(let number): return String(number)
        case .unsigned(let number): return String(number)
        case .bool(let flag): return flag ? "true" : "false"
        case .string(let bytes): return String(decoding: bytes, as: UTF8.self)
        }
    }

    static func < (lhs: MapKey, rhs: MapKey) -> Bool {
        switch (lhs.value, rhs.value) {
        case (.signed(let a), .signed(let b)): return a < b
        case (.unsigned(let a), .unsigned(let b)): return a < b
        case (.bool(let a), .bool(let b)): return !a && b
        case (.string(let a), .string(let b)): return a.lexicographicallyPrecedes(b)
        default: return false
        }
    }
}
