/// The well-known types' files, for registries (google/protobuf/*.proto as ProtobufKit ships them).
public let wellKnownFiles: [ProtoFileMetadata] = [
    Google.Protobuf.AnyProtoFile.metadata,
    Google.Protobuf.DurationProtoFile.metadata,
    Google.Protobuf.EmptyProtoFile.metadata,
    Google.Protobuf.FieldMaskProtoFile.metadata,
    Google.Protobuf.StructProtoFile.metadata,
    Google.Protobuf.TimestampProtoFile.metadata,
    Google.Protobuf.WrappersProtoFile.metadata,
    // google.rpc: the error model every gRPC status and the gateway's error bodies use.
    Google.Rpc.StatusProtoFile.metadata,
    Google.Rpc.ErrorDetailsProtoFile.metadata,
    Google.Rpc.CodeProtoFile.metadata,
]

/// Files generated code depends on without having Swift types of its own (the HTTP annotation
/// protos and descriptor.proto): their descriptors, so reflection can serve complete closures.
public let descriptorOnlyFiles: [ProtoFileMetadata] = [
    Google.Protobuf.DescriptorProtoFile.metadata,
    Google.Api.HttpProtoFile.metadata,
    Google.Api.AnnotationsProtoFile.metadata,
]
