import ProtobufKit

/// A message as its encoded bytes, with no schema: how a dynamic message travels through the
/// RPC runtime, whose calls take and return `Message` values.
///
/// protobuf-c encodes and decodes it as a `google.protobuf.Empty` whose every field is unknown:
/// unknown fields are kept in order and written back byte for byte, so the bytes that go out are
/// the bytes `DynamicCodec` produced, and the bytes that come in reach `DynamicCodec` unchanged.
public struct RawMessage: ProtobufKit.Message {
    public static let protoMessageName = "dronectl.RawMessage"
    public var unknownFields = UnknownFields()

    public init() {}

    /// A message of the given encoded bytes (checked to be well-formed fields).
    public init(encoded bytes: [UInt8]) throws {
        var reader = WireReader(bytes[...])
        while !reader.isAtEnd {
            let start = reader.position
            let key = try reader.varint()
            let afterKey = reader.position
            reader.position = start
            _ = try reader.field()
            // protobuf-c keeps the bytes after the tag (a length-delimited field's length
            // prefix included) and writes them back after the tag.
            unknownFields.fields.append(UnknownFields.Field(number: UInt32(truncatingIfNeeded: key >> 3),
                                                            wireType: UnknownFields.WireType(rawValue: UInt8(key & 7)),
                                                            payload: Array(bytes[afterKey..<reader.position])))
        }
    }

    /// The encoded bytes.
    public var encoded: [UInt8] {
        var writer = WireWriter()
        for field in unknownFields.fields {
            writer.varint(UInt64(field.number) << 3 | UInt64(field.wireType.rawValue))
            writer.bytes += field.payload
        }
        return writer.bytes
    }

    public static var _protobufCDescriptor: UnsafeRawPointer { Google.Protobuf.Empty._protobufCDescriptor }

    public func _buildProtobufC(in arena: ProtobufCArena) -> UnsafeMutableRawPointer {
        var carrier = Google.Protobuf.Empty()
        carrier.unknownFields = unknownFields
        return carrier._buildProtobufC(in: arena)
    }

    public init(_protobufC pointer: UnsafeRawPointer) throws {
        unknownFields = UnknownFields(_protobufC: pointer)
    }

    public func _writeJSON(to writer: inout JSONWriter) throws {
        throw DynamicCodecError("a RawMessage has no schema: write its JSON with DynamicCodec")
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        throw DynamicCodecError("a RawMessage has no schema: read JSON with DynamicCodec")
    }
}
