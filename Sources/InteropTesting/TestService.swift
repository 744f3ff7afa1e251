// The gRPC interop test service (grpc.testing.TestService) as doc/interop-test-descriptions.md
// of the gRPC project describes the server's behaviour, served by our runtime so that grpcio and
// other gRPC implementations can test against it.

import GRPCProtos
import ProtobufKit
import RPC

/// Short name inside this module (not public: it would shadow the Swift Testing module).
typealias Testing = Grpc.Testing

/// Metadata keys the interop cases echo back.
let echoInitialKey = "x-grpc-test-echo-initial"
let echoTrailingKey = "x-grpc-test-echo-trailing-bin"

/// grpc.testing.TestService as the interop descriptions specify the server's side, written
/// against the generated `Handler` protocol.
public struct InteropTestService: Grpc.Testing.TestService.Handler {
    public init() {}

    public func emptyCall(_ request: Grpc.Testing.Empty, context: ServerContext) async throws -> Grpc.Testing.Empty {
        echoMetadata(context)
        return Grpc.Testing.Empty()
    }

    public func unaryCall(_ request: Grpc.Testing.SimpleRequest, context: ServerContext) async throws -> Grpc.Testing.SimpleResponse {
        echoMetadata(context)
        if request.expectCompressed?.value == true && context.requestEncoding == nil {
            throw RPCError(.invalidArgument, "expected a compressed request")
        }
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
        }
        // CompressedResponse: compressed (if the client accepts gzip) or not, as asked.
        if let compressed = request.responseCompressed { context.compressResponses = compressed.value }
        var response = Grpc.Testing.SimpleResponse()
        response.payload = payload(size: Int(request.responseSize))
        return response
    }

    public func cacheableUnaryCall(_ request: Grpc.Testing.SimpleRequest, context: ServerContext) async throws -> Grpc.Testing.SimpleResponse {
        try await unaryCall(request, context: context)
    }

    public func streamingOutputCall(_ request: Grpc.Testing.StreamingOutputCallRequest, writer: ResponseWriter<Grpc.Testing.StreamingOutputCallResponse>,
                                    context: ServerContext) async throws {
        echoMetadata(context)
        try await respond(to: request.responseParameters, writer: writer, context: context)
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
        }
    }

    public func streamingInputCall(_ requests: RequestStream<Grpc.Testing.StreamingInputCallRequest>, context: ServerContext) async throws -> Grpc.Testing.StreamingInputCallResponse {
        echoMetadata(context)
        var total = 0
        for try await request in requests {
            if request.expectCompressed?.value == true && context.requestEncoding == nil {
                throw RPCError(.invalidArgument, "expected a compressed request")
            }
            total += request.payload?.body.count ?? 0
        }
        var response = Grpc.Testing.StreamingInputCallResponse()
        response.aggregatedPayloadSize = Int32(total)
        return response
    }

    public func fullDuplexCall(_ requests: RequestStream<Grpc.Testing.StreamingOutputCallRequest>, writer: ResponseWriter<Grpc.Testing.StreamingOutputCallResponse>,
                               context: ServerContext) async throws {
        echoMetadata(context)
        for try await request in requests {
            if let status = request.responseStatus, status.code != 0 {
                throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
            }
            try await respond(to: request.responseParameters, writer: writer, context: context)
        }
    }

    public func halfDuplexCall(_ requests: RequestStream<Grpc.Testing.StreamingOutputCallRequest>, writer: ResponseWriter<Grpc.Testing.StreamingOutputCallResponse>,
                               context: ServerContext) async throws {
        echoMetadata(context)
        var buffered: [Grpc.Testing.StreamingOutputCallRequest] = []
        for try await request in requests { buffered.append(request) }
        for request in buffered { try await respond(to: request.responseParameters, writer: writer, context: context) }
    }

    /// The interop cases expect this one method to be unimplemented.
    public func unimplementedCall(_ request: Grpc.Testing.Empty, context: ServerContext) async throws -> Grpc.Testing.Empty {
        throw RPCError(.unimplemented, "method /grpc.testing.TestService/UnimplementedCall is not implemented")
    }
}

/// A router serving the interop TestService.
public func interopTestServiceRouter() -> Router {
    var router = Router()
    InteropTestService().register(in: &router)
    return router
}

func echoMetadata(_ context: ServerContext) {
    if let initial = context.metadata[echoInitialKey] { context.addInitialMetadata(echoInitialKey, initial) }
    for trailing in context.metadata.binaryValues(echoTrailingKey) { context.addTrailingMetadata(echoTrailingKey, binary: trailing) }
}

func payload(size: Int) -> Grpc.Testing.Payload {
    var payload = Grpc.Testing.Payload()
    payload.type = .compressable
    payload.body = [UInt8](repeating: 0, count: max(0, size))
    return payload
}

/// One response per parameter. `compressed` is per message; a call in which any message asks
/// for compression turns it on for the call first, so the response headers name gzip even when
/// the first message goes uncompressed.
func respond(to parameters: [Grpc.Testing.ResponseParameters], writer: ResponseWriter<Grpc.Testing.StreamingOutputCallResponse>,
             context: ServerContext) async throws {
    if parameters.contains(where: { $0.compressed?.value == true }) { context.compressResponses = true }
    for parameter in parameters {
        if parameter.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int64(parameter.intervalUs))) }
        var response = Grpc.Testing.StreamingOutputCallResponse()
        response.payload = payload(size: Int(parameter.size))
        if let compressed = parameter.compressed {
            try await writer.write(response, compressed: compressed.value)
        } else {
            try await writer.write(response)
        }
    }
}
