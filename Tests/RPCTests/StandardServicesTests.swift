import Foundation
import GRPCProtos
import ProtobufKit
import RPC
@testable import RPCServices
import Testing
import TestSupport

typealias Health = Grpc.Health.V1
typealias Reflection = Grpc.Reflection.V1

@Suite("Health and reflection", .serialized)
struct StandardServicesTests {
    @Test("health: Check per service, NOT_FOUND for unknown, List, and Watch sees every change")
    func health() async throws {
        let health = HealthService()
        var router = Router()
        health.register(in: &router)
        health.setStatus(.serving, for: "fabrikam.Delivery")
        try await withServer(router) { client, _ in
            var request = Health.HealthCheckRequest()
            request.service = "fabrikam.Delivery"
            #expect(try await client.unary(Health.Health.Method.Check.self, request).status == .serving)
            request.service = "nope"
            let error = await #expect(throws: RPCError.self) { _ = try await client.unary(Health.Health.Method.Check.self, request) }
            #expect(error?.code == .notFound)
            let list = try await client.unary(Health.Health.Method.List.self, Health.HealthListRequest())
            #expect(list.statuses["fabrikam.Delivery"]?.status == .serving)
            #expect(list.statuses[""]?.status == .serving)

            request.service = "later"
            let seen = try await client.serverStreaming(Health.Health.Method.Watch.self, request) { updates in
                var seen: [Health.HealthCheckResponse.ServingStatus] = []
                for try await update in updates {
                    seen.append(update.status)
                    if seen.count == 1 { health.setStatus(.serving, for: "later") }
                    if seen.count == 2 { health.setStatus(.notServing, for: "later") }
                    if seen.count == 3 { break }
                }
                return seen
            }
            #expect(seen == [.serviceUnknown, .serving, .notServing])

            // Watches of 50 names nobody set, each ended by the client: nothing is kept of them.
            for index in 0..<50 {
                request.service = "never-set-\(index)"
                let first = try await client.serverStreaming(Health.Health.Method.Watch.self, request) { updates -> Health.HealthCheckResponse.ServingStatus? in
                    for try await update in updates { return update.status }
                    return nil
                }
                #expect(first == .serviceUnknown)
            }
            #expect(try await waitUntil { health.watchedServiceCount == 0 }, "\(health.watchedServiceCount) watched names kept")
        }
    }

    @Test("reflection lists services and serves descriptors with their dependencies")
    func reflection() async throws {
        var router = Router()
        let health = HealthService()
        health.register(in: &router)
        ReflectionService(files: grpcProtoFiles, services: router.serviceNames + ["grpc.reflection.v1.ServerReflection"]).register(in: &router)
        try await withServer(router) { client, _ in
            let responses = try await client.bidirectional(Reflection.ServerReflection.Method.ServerReflectionInfo.self) { writer, responses in
                var list = Reflection.ServerReflectionRequest()
                list.messageRequest = .listServices("")
                try await writer.write(list)
                var symbol = Reflection.ServerReflectionRequest()
                symbol.messageRequest = .fileContainingSymbol("grpc.health.v1.Health.Check")
                try await writer.write(symbol)
                var missing = Reflection.ServerReflectionRequest()
                missing.messageRequest = .fileContainingSymbol("no.such.Symbol")
                try await writer.write(missing)
                writer.finish()
                var collected: [Reflection.ServerReflectionResponse] = []
                for try await response in responses { collected.append(response) }
                return collected
            }
            #expect(responses.count == 3)
            guard case .listServicesResponse(let list)? = responses[0].messageResponse else {
                Issue.record("no list_services response")
                return
            }
            #expect(list.service.map(\.name) == ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"])
            guard case .fileDescriptorResponse(let files)? = responses[1].messageResponse else {
                Issue.record("no file descriptor response")
                return
            }
            // Check the descriptor with protoc, an independent decoder.
            let text = String(decoding: try await run("/usr/bin/protoc", ["-I", "/usr/include", "--decode=google.protobuf.FileDescriptorProto",
                                                                     "google/protobuf/descriptor.proto"], input: Data(files.fileDescriptorProto[0])), as: UTF8.self)
            #expect(text.contains("name: \"grpc/health/v1/health.proto\""))
            #expect(text.contains("name: \"Watch\""))
            guard case .errorResponse(let error)? = responses[2].messageResponse else {
                Issue.record("no error response for an unknown symbol")
                return
            }
            #expect(error.errorCode == Int32(RPCError.Code.notFound.rawValue))

            // v1alpha answers the same, through the same implementation.
            typealias V1alpha = Grpc.Reflection.V1alpha
            let alpha = try await client.bidirectional(V1alpha.ServerReflection.Method.ServerReflectionInfo.self) { writer, responses in
                var symbol = V1alpha.ServerReflectionRequest()
                symbol.host = "alpha"
                symbol.messageRequest = .fileContainingSymbol("grpc.health.v1.HealthCheckRequest")
                try await writer.write(symbol)
                writer.finish()
                var collected: [V1alpha.ServerReflectionResponse] = []
                for try await response in responses { collected.append(response) }
                return collected
            }
            #expect(alpha.count == 1)
            #expect(alpha.first?.validHost == "alpha")
            guard case .fileDescriptorResponse(let alphaFiles)? = alpha.first?.messageResponse else {
                Issue.record("no v1alpha file descriptor response")
                return
            }
            #expect(alphaFiles.fileDescriptorProto.first == files.fileDescriptorProto.first)
        }
    }

    @Test("reflection answers file_containing_extension and all_extension_numbers_of_type (google.api.http)")
    func reflectionExtensions() async throws {
        var router = Router()
        ReflectionService(files: grpcProtoFiles, services: ["grpc.reflection.v1.ServerReflection"]).register(in: &router)
        try await withServer(router) { client, _ in
            let requests: [Reflection.ServerReflectionRequest.MessageRequest] = [
                .allExtensionNumbersOfType("google.protobuf.MethodOptions"),
                .fileContainingExtension(extensionRequest("google.protobuf.MethodOptions", 72_295_728)),
                .fileContainingExtension(extensionRequest("google.protobuf.MethodOptions", 5)),
                .allExtensionNumbersOfType("no.such.Type"),
                .fileContainingSymbol("google.api.http"),
            ]
            let responses = try await client.bidirectional(Reflection.ServerReflection.Method.ServerReflectionInfo.self) { writer, responses in
                for messageRequest in requests {
                    var request = Reflection.ServerReflectionRequest()
                    request.messageRequest = messageRequest
                    try await writer.write(request)
                }
                writer.finish()
                var collected: [Reflection.ServerReflectionResponse] = []
                for try await response in responses { collected.append(response) }
                return collected
            }
            try #require(responses.count == 5)
            guard case .allExtensionNumbersResponse(let numbers)? = responses[0].messageResponse else {
                Issue.record("no extension numbers: \(responses[0])")
                return
            }
            #expect(numbers.baseTypeName == "google.protobuf.MethodOptions")
            #expect(numbers.extensionNumber == [72_295_728])

            guard case .fileDescriptorResponse(let files)? = responses[1].messageResponse else {
                Issue.record("no file for the extension: \(responses[1])")
                return
            }
            // The declaring file comes last, after its dependencies; read it with protoc.
            var names: [String] = []
            for file in files.fileDescriptorProto { names.append(try await decodedFileName(file)) }
            #expect(names.last == "google/api/annotations.proto")
            #expect(Set(names) == ["google/protobuf/descriptor.proto", "google/api/http.proto", "google/api/annotations.proto"])

            guard case .errorResponse(let unknownNumber)? = responses[2].messageResponse else {
                Issue.record("an unknown extension number got an answer: \(responses[2])")
                return
            }
            #expect(unknownNumber.errorCode == Int32(RPCError.Code.notFound.rawValue))
            guard case .errorResponse(let unknownType)? = responses[3].messageResponse else {
                Issue.record("an unknown type got an answer: \(responses[3])")
                return
            }
            #expect(unknownType.errorCode == Int32(RPCError.Code.notFound.rawValue))
            // Files already sent on this stream are sent again alone, so the answer is not empty.
            guard case .fileDescriptorResponse(let symbolFiles)? = responses[4].messageResponse else {
                Issue.record("the extension's name is not a known symbol: \(responses[4])")
                return
            }
            var symbolFileNames: [String] = []
            for file in symbolFiles.fileDescriptorProto { symbolFileNames.append(try await decodedFileName(file)) }
            #expect(symbolFileNames == ["google/api/annotations.proto"])
        }
    }

    func extensionRequest(_ type: String, _ number: Int32) -> Reflection.ExtensionRequest {
        var request = Reflection.ExtensionRequest()
        request.containingType = type
        request.extensionNumber = number
        return request
    }

    /// The `name` of a serialized FileDescriptorProto, read by protoc (an independent decoder).
    func decodedFileName(_ bytes: [UInt8]) async throws -> String {
        let text = String(decoding: try await run("/usr/bin/protoc", ["-I", "/usr/include", "--decode=google.protobuf.FileDescriptorProto",
                                                                 "google/protobuf/descriptor.proto"], input: Data(bytes)), as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("name: ") }) else { return "" }
        return String(line.dropFirst(6)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
}
