internal import CProtobufC

/// Fields that arrived on the wire but are not in this version of the schema.
///
/// Kept in arrival order and written back on re-encode, so a service that forwards a message it
/// only partly understands loses nothing (proto3's rule since 3.5).
public struct UnknownFields: Sendable, Hashable {
    /// The wire type of a field, as in the encoding specification.
    public struct WireType: Sendable, Hashable, RawRepresentable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let varint = WireType(rawValue: 0)
        public static let fixed64 = WireType(rawValue: 1)
        public static let lengthDelimited = WireType(rawValue: 2)
        public static let fixed32 = WireType(rawValue: 5)
    }

    /// One unknown field: its number, wire type and payload, the bytes that followed the tag on
    /// the wire (for a length-delimited field that includes its length prefix, as protobuf-c
    /// keeps and re-emits it).
    public struct Field: Sendable, Hashable {
        public var number: UInt32
        public var wireType: WireType
        public var payload: [UInt8]
        public init(number: UInt32, wireType: WireType, payload: [UInt8]) {
            self.number = number
            self.wireType = wireType
            self.payload = payload
        }

        /// A float or double field holding -0.0 (see `negativeZeroField`).
        public static func negativeZero(number: UInt32, isDouble: Bool) -> Field {
            UnknownFields.negativeZeroField(number: number, isDouble: isDouble)
        }
    }

    public var fields: [Field] = []

    /// Used by generated code for the one value protobuf-c would drop: a float or double field
    /// holding -0.0, which proto3 treats as set.
    public static func negativeZeroField(number: UInt32, isDouble: Bool) -> Field {
        isDouble
            ? Field(number: number, wireType: .fixed64, payload: withUnsafeBytes(of: (-0.0 as Double).bitPattern.littleEndian, Array.init))
            : Field(number: number, wireType: .fixed32, payload: withUnsafeBytes(of: (-0.0 as Float).bitPattern.littleEndian, Array.init))
    }
    public var isEmpty: Bool { fields.isEmpty }

    public init() {}

    /// Reads the unknown fields protobuf-c collected on the `ProtobufCMessage` at `message`.
    public init(_protobufC message: UnsafeRawPointer) {
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self).pointee
        guard base.n_unknown_fields > 0, let list = base.unknown_fields else { return }
        fields.reserveCapacity(Int(base.n_unknown_fields))
        for index in 0..<Int(base.n_unknown_fields) {
            let entry = list[index]
            let payload = entry.len > 0 && entry.data != nil
                ? Array(UnsafeBufferPointer(start: entry.data, count: entry.len)) : []
            fields.append(Field(number: entry.tag, wireType: WireType(rawValue: UInt8(truncatingIfNeeded: entry.wire_type.rawValue)), payload: payload))
        }
    }
}
