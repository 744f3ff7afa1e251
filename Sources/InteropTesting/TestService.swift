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

/// The TestService routes: EmptyCall, UnaryCall, CacheableUnaryCall, StreamingOutputCall,
/// StreamingInputCall, FullDuplexCall and HalfDuplexCall (UnimplementedCall stays unimplemented).
public func interopTestServiceRouter() -> Router {
    var router = Router()
    typealias Methods = Testing.TestService.Method

    router.unary(Methods.EmptyCall.self) { _, context in
        echoMetadata(context)
        return Testing.Empty()
    }

    let unary: @Sendable (Testing.SimpleRequest, ServerContext) async throws -> Testing.SimpleResponse = { request, context in
        echoMetadata(context)
        if request.expectCompressed?.value == true && context.requestEncoding == nil {
            throw RPCError(.invalidArgument, "expected a compressed request")
        }
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
        }
        var response = Testing.SimpleResponse()
        response.payload = payload(size: Int(request.responseSize))
        return response
    }
    router.unary(Methods.UnaryCall.self, unary)
    router.unary(Methods.CacheableUnaryCall.self, unary)

    router.serverStreaming(Methods.StreamingOutputCall.self) { request, writer, context in
        echoMetadata(context)
        try await respond(to: request.responseParameters, writer: writer)
        if let status = request.responseStatus, status.code != 0 {
            throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
        }
    }

    router.clientStreaming(Methods.StreamingInputCall.self) { requests, context in
        echoMetadata(context)
        var total = 0
        for try await request in requests {
            if request.expectCompressed?.value == true && context.requestEncoding == nil {
                throw RPCError(.invalidArgument, "expected a compressed request")
            }
            total += request.payload?.body.count ?? 0
        }
        var response = Testing.StreamingInputCallResponse()
        response.aggregatedPayloadSize = Int32(total)
        return response
    }

    router.bidirectional(Methods.FullDuplexCall.self) { requests, writer, context in
        echoMetadata(context)
        for try await request in requests {
            if let status = request.responseStatus, status.code != 0 {
                throw RPCError(RPCError.Code(rawValue: Int(status.code)), status.message)
            }
            try await respond(to: request.responseParameters, writer: writer)
        }
    }

    router.bidirectional(Methods.HalfDuplexCall.self) { requests, writer, context in
        echoMetadata(context)
        var buffered: [Testing.StreamingOutputCallRequest] = []
        for try await request in requests { buffered.append(request) }
        for request in buffered { try await respond(to: request.responseParameters, writer: writer) }
    }
    return router
}

func echoMetadata(_ context: ServerContext) {
    if let initial = context.metadata[echoInitialKey] { context.addInitialMetadata(echoInitialKey, initial) }
    for trailing in context.metadata.binaryValues(echoTrailingKey) { context.addTrailingMetadata(echoTrailingKey, binary: trailing) }
}

func payload(size: Int) -> Testing.Payload {
    var payload = Testing.Payload()
    payload.type = .compressable
    payload.body = [UInt8](repeating: 0, count: max(0, size))
    return payload
}

func respond(to parameters: [Testing.ResponseParameters], writer: ResponseWriter<Testing.StreamingOutputCallResponse>) async throws {
    for parameter in parameters {
        if parameter.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int64(parameter.intervalUs))) }
        var response = Testing.StreamingOutputCallResponse()
        response.payload = payload(size: Int(parameter.size))
        try await writer.write(response)
    }
}
