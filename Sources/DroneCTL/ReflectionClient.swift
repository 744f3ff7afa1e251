import DynamicProtobuf
import GRPCProtos
import ProtobufKit
import RPC

/// Asks a server what it serves, through gRPC server reflection: v1, or v1alpha when the
/// server has only that (older grpc-go and grpc-java servers). Descriptors come back as
/// serialized FileDescriptorProtos, with the files they import.
struct ReflectionClient {
    typealias V1 = Grpc.Reflection.V1
    typealias V1alpha = Grpc.Reflection.V1alpha

    let client: RPCClient
    let options: CallOptions

    /// One reflection stream: questions asked one at a time.
    final class Session {
        let ask: (V1.ServerReflectionRequest) async throws -> V1.ServerReflectionResponse
        init(ask: @escaping (V1.ServerReflectionRequest) async throws -> V1.ServerReflectionResponse) { self.ask = ask }

        func answer(_ request: V1.ServerReflectionRequest.MessageRequest) async throws -> V1.ServerReflectionResponse.MessageResponse? {
            var question = V1.ServerReflectionRequest()
            question.messageRequest = request
            let response = try await ask(question)
            if case .errorResponse(let error)? = response.messageResponse {
                throw RPCError(RPCError.Code(rawValue: Int(error.errorCode)), "reflection: \(error.errorMessage)")
            }
            return response.messageResponse
        }

        func listServices() async throws -> [String] {
            guard case .listServicesResponse(let list)? = try await answer(.listServices("")) else {
                throw RPCError(.internal, "reflection answered list_services with something else")
            }
            return list.service.map(\.name)
        }

        func files(_ request: V1.ServerReflectionRequest.MessageRequest) async throws -> [[UInt8]] {
            guard case .fileDescriptorResponse(let files)? = try await answer(request) else {
                throw RPCError(.internal, "reflection answered a file request with something else")
            }
            return files.fileDescriptorProto
        }
    }

    /// Runs `body` on a reflection stream, v1 first and v1alpha if the server lacks v1.
    func withSession<T: Sendable>(_ body: (Session) async throws -> T) async throws -> T {
        do {
            return try await client.bidirectional(V1.ServerReflection.Method.ServerReflectionInfo.self, options: options) { writer, responses in
                var iterator = responses.makeAsyncIterator()
                let session = Session { request in
                    try await writer.write(request)
                    guard let response = try await iterator.next() else { throw RPCError(.internal, "the reflection stream ended early") }
                    return response
                }
                defer { writer.finish() }
                return try await body(session)
            }
        } catch let error as RPCError where error.code == .unimplemented {
            return try await client.bidirectional(V1alpha.ServerReflection.Method.ServerReflectionInfo.self, options: options) { writer, responses in
                var iterator = responses.makeAsyncIterator()
                // v1alpha is v1 under another package name, field for field: convert by bytes.
                let session = Session { request in
                    try await writer.write(try V1alpha.ServerReflectionRequest(serializedBytes: request.serializedBytes()))
                    guard let response = try await iterator.next() else { throw RPCError(.internal, "the reflection stream ended early") }
                    return try V1.ServerReflectionResponse(serializedBytes: response.serializedBytes())
                }
                defer { writer.finish() }
                return try await body(session)
            }
        }
    }

    func listServices() async throws -> [String] {
        try await withSession { try await $0.listServices() }.sorted()
    }

    /// The files that declare `symbols`, and every file they import that the server has.
    /// With `skipUnknown`, a symbol the server cannot describe is left out instead of failing.
    func pool(describing symbols: [String], skipUnknown: Bool = false) async throws -> DescriptorPool {
        try await withSession { session in
            var pool = DescriptorPool()
            for symbol in symbols {
                do {
                    try pool.add(fileDescriptorProtos: try await session.files(.fileContainingSymbol(symbol)))
                } catch let error as RPCError where error.code == .notFound {
                    if skipUnknown { continue }
                    throw RPCError(.notFound, "the server does not know \(symbol) (dronectl list shows what it serves)")
                }
            }
            var asked: Set<String> = []
            while let missing = pool.missingDependencies.first(where: { !asked.contains($0) }) {
                asked.insert(missing)
                // A dependency the server cannot send (a well-known type, usually) is not needed:
                // well-known types are built in.
                if let files = try? await session.files(.fileByFilename(missing)) { try pool.add(fileDescriptorProtos: files) }
            }
            return pool
        }
    }

    /// Every service the server lists, with its files.
    func poolOfEverything() async throws -> (services: [String], pool: DescriptorPool) {
        let services = try await listServices()
        return (services, try await pool(describing: services, skipUnknown: true))
    }
}
