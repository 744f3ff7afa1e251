import ProtobufKit

/// A well-known type that ProtobufKit implements, used by dynamic messages wherever a field
/// has that type, so its JSON form (RFC 3339 timestamps, "1.5s" durations, bare wrapper values,
/// Struct as plain JSON) is the one generated code reads and writes.
struct WellKnownType: Sendable {
    /// The binary encoding of the value whose JSON form is given.
    let encode: @Sendable (JSONValue) throws -> [UInt8]
    /// Writes the JSON form of the value encoded in the bytes.
    let writeJSON: @Sendable (ArraySlice<UInt8>, inout JSONWriter) throws -> Void

    static func of<M: ProtobufKit.Message>(_ type: M.Type) -> (String, WellKnownType) {
        (M.protoMessageName, WellKnownType(
            encode: { json in try M(jsonValue: json).serializedBytes() },
            writeJSON: { bytes, writer in try M(serializedBytes: bytes)._writeJSON(to: &writer) }
        ))
    }

    static let byName: [String: WellKnownType] = Dictionary(uniqueKeysWithValues: [
        of(Google.Protobuf.Timestamp.self), of(Google.Protobuf.Duration.self), of(Google.Protobuf.FieldMask.self),
        of(Google.Protobuf.Empty.self), of(Google.Protobuf.Struct.self), of(Google.Protobuf.Value.self), of(Google.Protobuf.ListValue.self),
        of(Google.Protobuf.DoubleValue.self), of(Google.Protobuf.FloatValue.self), of(Google.Protobuf.Int64Value.self),
        of(Google.Protobuf.UInt64Value.self), of(Google.Protobuf.Int32Value.self), of(Google.Protobuf.UInt32Value.self),
        of(Google.Protobuf.BoolValue.self), of(Google.Protobuf.StringValue.self), of(Google.Protobuf.BytesValue.self),
    ])

    /// Whether a google.protobuf.Any holding `typeName` writes it as `{"@type": ..., "value": <form>}`:
    /// the types with a JSON form of their own, and Any itself. Empty is written as fields (none),
    /// as in protobuf's canonical mapping (and Python's json_format).
    static func isValueFormInAny(_ typeName: String) -> Bool {
        typeName == "google.protobuf.Any" || (byName[typeName] != nil && typeName != "google.protobuf.Empty")
    }

    func writeJSON(_ bytes: ArraySlice<UInt8>, to writer: inout JSONWriter) throws { try writeJSON(bytes, &writer) }
}
