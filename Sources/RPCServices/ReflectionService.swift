import GRPCProtos
import ProtobufKit
import RPC

/// Server reflection (grpc.reflection.v1 and v1alpha): lists the services a server offers and
/// serves the FileDescriptorProtos that describe them, with their dependencies, so tools such as
/// `buf curl` and grpcurl can call every method with no .proto file at hand.
public struct ReflectionService: Sendable {
    let index: DescriptorIndex
    let serviceNames: [String]

    /// - Parameters:
    ///   - files: the generated files whose services and messages the server uses (their
    ///     dependencies must be among `files` too; the well-known and annotation files are added).
    ///   - services: the fully qualified services to list (usually `router.serviceNames`).
    public init(files: [ProtoFileMetadata], services: [String]) {
        index = DescriptorIndex(files: files + wellKnownFiles + descriptorOnlyFiles)
        serviceNames = Array(Set(services)).sorted()
    }

    /// The answer to one request.
    enum Answer {
        case files([[UInt8]])
        case services([String])
        case extensionNumbers(type: String, numbers: [Int32])
        case error(RPCError.Code, String)
    }

    /// Serves every file at most once per stream, as the protocol allows and clients expect.
    func answer(fileByName name: String, sent: inout Set<String>) -> Answer {
        guard index.files[name] != nil else { return .error(.notFound, "file \(name) is not known") }
        return .files(descriptors(index.closure(of: name), sent: &sent))
    }

    func answer(symbol: String, sent: inout Set<String>) -> Answer {
        guard let file = index.fileForSymbol[symbol] else { return .error(.notFound, "symbol \(symbol) is not known") }
        return .files(descriptors(index.closure(of: file), sent: &sent))
    }

    func descriptors(_ files: [ProtoFileMetadata], sent: inout Set<String>) -> [[UInt8]] {
        var result: [[UInt8]] = []
        for file in files where sent.insert(file.name).inserted { result.append(file.serializedDescriptor) }
        // A file asked for again is sent again, alone, so the answer is never empty.
        if result.isEmpty, let last = files.last { result.append(last.serializedDescriptor) }
        return result
    }

    /// Adds ServerReflectionInfo for v1 and v1alpha to `router`.
    ///
    /// v1alpha is v1 under another package name, field for field, so its messages cross over to
    /// v1 through their bytes and one implementation serves both (reflection is not a hot path).
    public func register(in router: inout Router) {
        typealias V1 = Grpc.Reflection.V1
        typealias V1alpha = Grpc.Reflection.V1alpha
        let service = self

        router.bidirectional(V1.ServerReflection.Method.ServerReflectionInfo.self) { requests, writer, _ in
            var sent: Set<String> = []
            for try await request in requests {
                try await writer.write(service.respond(to: request, sent: &sent))
            }
        }

        router.bidirectional(V1alpha.ServerReflection.Method.ServerReflectionInfo.self) { requests, writer, _ in
            var sent: Set<String> = []
            for try await request in requests {
                let v1Request = try V1.ServerReflectionRequest(serializedBytes: request.serializedBytes())
                let v1Response = service.respond(to: v1Request, sent: &sent)
                try await writer.write(V1alpha.ServerReflectionResponse(serializedBytes: v1Response.serializedBytes()))
            }
        }
    }

    /// The v1 response to one request.
    func respond(to request: Grpc.Reflection.V1.ServerReflectionRequest, sent: inout Set<String>) -> Grpc.Reflection.V1.ServerReflectionResponse {
        typealias V1 = Grpc.Reflection.V1
        var response = V1.ServerReflectionResponse()
        response.validHost = request.host
        response.originalRequest = request
        switch answer(request.messageRequest.map(Request.init) ?? .none, sent: &sent) {
        case .files(let files):
            var descriptors = V1.FileDescriptorResponse()
            descriptors.fileDescriptorProto = files
            response.messageResponse = .fileDescriptorResponse(descriptors)
        case .services(let names):
            var list = V1.ListServiceResponse()
            list.service = names.map { name in
                var entry = V1.ServiceResponse()
                entry.name = name
                return entry
            }
            response.messageResponse = .listServicesResponse(list)
        case .extensionNumbers(let type, let numbers):
            var extensions = V1.ExtensionNumberResponse()
            extensions.baseTypeName = type
            extensions.extensionNumber = numbers
            response.messageResponse = .allExtensionNumbersResponse(extensions)
        case .error(let code, let message):
            var error = V1.ErrorResponse()
            error.errorCode = Int32(code.rawValue)
            error.errorMessage = message
            response.messageResponse = .errorResponse(error)
        }
        return response
    }

    /// A reflection request, in the terms `answer` works with.
    enum Request {
        case fileByName(String)
        case symbol(String)
        case extensionNumbers(String)
        case fileContainingExtension(String, Int32)
        case listServices
        case none

        init(_ request: Grpc.Reflection.V1.ServerReflectionRequest.MessageRequest) {
            switch request {
            case .fileByFilename(let name): self = .fileByName(name)
            case .fileContainingSymbol(let symbol): self = .symbol(symbol)
            case .fileContainingExtension(let ext): self = .fileContainingExtension(ext.containingType, ext.extensionNumber)
            case .allExtensionNumbersOfType(let type): self = .extensionNumbers(type)
            case .listServices: self = .listServices
            }
        }
    }

    func answer(_ request: Request, sent: inout Set<String>) -> Answer {
        switch request {
        case .fileByName(let name): return answer(fileByName: name, sent: &sent)
        case .symbol(let symbol): return answer(symbol: symbol, sent: &sent)
        case .listServices: return .services(serviceNames)
        case .extensionNumbers(let type):
            guard index.fileForSymbol[type] != nil else { return .error(.notFound, "type \(type) is not known") }
            return .extensionNumbers(type: type, numbers: index.extensionNumbers(of: type))
        case .fileContainingExtension(let type, let number):
            guard let file = index.extensionFiles[type]?[number] else {
                return .error(.notFound, "no extension \(number) of \(type) is known")
            }
            return .files(descriptors(index.closure(of: file), sent: &sent))
        case .none:
            return .error(.invalidArgument, "the request names nothing to reflect on")
        }
    }
}
