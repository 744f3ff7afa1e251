/// The well-known types' files, for registries (google/protobuf/*.proto as ProtobufKit ships them).
public let wellKnownFiles: [ProtoFileMetadata] = [
    Google.Protobuf.AnyProtoFile.metadata,
    Google.Protobuf.DurationProtoFile.metadata,
    Google.Protobuf.EmptyProtoFile.metadata,
    Google.Protobuf.FieldMaskProtoFile.metadata,
    Google.Protobuf.StructProtoFile.metadata,
    Google.Protobuf.TimestampProtoFile.metadata,
    Google.Protobuf.WrappersProtoFile.metadata,
]
