// GRPCProtos: the standard gRPC contracts the system serves and speaks, generated from proto/grpc
// by `make proto` (see Generated/):
// - grpc.health.v1 (health checking), grpc.reflection.v1 and v1alpha (server reflection),
// - grpc.testing (the gRPC interop test service).
// google.rpc (Status, Code, the error details) lives in ProtobufKit, so that RPCError can carry it.

public import ProtobufKit

/// Every file of this module, for type registries and the reflection service.
public let grpcProtoFiles: [ProtoFileMetadata] = [
    Grpc.Health.V1.HealthProtoFile.metadata,
    Grpc.Reflection.V1.ReflectionProtoFile.metadata,
    Grpc.Reflection.V1alpha.ReflectionProtoFile.metadata,
    Grpc.Testing.EmptyProtoFile.metadata,
    Grpc.Testing.MessagesProtoFile.metadata,
    Grpc.Testing.TestProtoFile.metadata,
]
