import DroneDeliveryAPI
import Foundation
import GRPCProtos
import ProtobufKit
import Testing
import TestSupport

/// Checks on the contracts themselves, through the generated metadata.
@Suite("Contracts in proto/")
struct ContractTests {
    static let allFiles = droneDeliveryProtoFiles + grpcProtoFiles
    static let registry = TypeRegistry(files: allFiles + wellKnownFiles)

    @Test("every service lives in a versioned fabrikam.dronedelivery.<service>.v1 package")
    func versionedPackages() {
        for file in droneDeliveryProtoFiles {
            let parts = file.package.split(separator: ".")
            #expect(parts.count == 4 && parts[0] == "fabrikam" && parts[1] == "dronedelivery" && parts[3] == "v1", "\(file.package)")
        }
    }

    @Test("the embedded descriptors are the files protoc compiled", arguments: allFiles.map(\.name))
    func embeddedDescriptors(fileName: String) async throws {
        let file = try #require(Self.allFiles.first { $0.name == fileName })
        let text = String(decoding: try await run("/usr/bin/protoc", ["-I", "/usr/include", "--decode=google.protobuf.FileDescriptorProto",
                                                                 "google/protobuf/descriptor.proto"], input: Data(file.serializedDescriptor)), as: UTF8.self)
        #expect(text.contains("name: \"\(file.name)\""))
        #expect(text.contains("package: \"\(file.package)\""))
        for service in file.services {
            #expect(text.contains("name: \"\(service.fullName.split(separator: ".").last!)\""))
        }
    }

    @Test("method paths, types and streaming flags are consistent")
    func methods() throws {
        let services = Self.allFiles.flatMap(\.services)
        #expect(services.count >= 12)
        for service in services {
            for method in service.methods {
                #expect(method.path == "/\(service.fullName)/\(method.name)")
                #expect(Self.registry.type(named: method.inputType) != nil, "\(method.path): input \(method.inputType)")
                #expect(Self.registry.type(named: method.outputType) != nil, "\(method.path): output \(method.outputType)")
            }
        }
        let track = try #require(services.flatMap(\.methods).first { $0.name == "TrackDelivery" })
        #expect(track.serverStreaming && !track.clientStreaming)
        #expect(track.httpRule?.method == "GET")
    }

    /// Every `{variable}` of a route and its `body` must name a field of the request, so the
    /// gateway can bind it. Checked by decoding a JSON object with that path into the request.
    @Test("HTTP routes bind real request fields")
    func routesBindFields() throws {
        var routes = 0
        for method in Self.allFiles.flatMap(\.services).flatMap(\.methods) {
            guard let rule = method.httpRule else { continue }
            let input = try #require(Self.registry.type(named: method.inputType))
            for binding in [rule] + rule.additionalBindings {
                routes += 1
                #expect(["GET", "PUT", "POST", "DELETE", "PATCH"].contains(binding.method), "\(method.path)")
                #expect(binding.pattern.hasPrefix("/v1/"), "\(method.path): \(binding.pattern)")
                for variable in pathVariables(binding.pattern) {
                    // Bind a string, or an object for a message-typed variable such as `name`.
                    let object = nestedObject(path: variable.split(separator: ".").map(String.init), leaf: "\"x\"")
                    #expect(throws: Never.self, "\(method.path): {\(variable)}") {
                        _ = try input.init(jsonString: object, options: .defaults { $0.typeRegistry = Self.registry })
                    }
                }
                if !binding.body.isEmpty && binding.body != "*" {
                    let object = nestedObject(path: [binding.body], leaf: "{}")
                    #expect(throws: Never.self, "\(method.path): body \(binding.body)") {
                        _ = try input.init(jsonString: object, options: .defaults { $0.typeRegistry = Self.registry })
                    }
                }
            }
        }
        #expect(routes >= 20)
    }

    func pathVariables(_ pattern: String) -> [String] {
        var names: [String] = []
        var current: String?
        for character in pattern {
            if character == "{" { current = "" }
            else if character == "}" { if let name = current { names.append(String(name.split(separator: "=")[0])) }; current = nil }
            else if current != nil { current!.append(character) }
        }
        return names
    }

    func nestedObject(path: [String], leaf: String) -> String {
        path.reversed().reduce(leaf) { inner, key in "{\"\(key)\":\(inner)}" }
    }

    @Test("a delivery request round-trips through binary and JSON")
    func deliveryRequest() throws {
        var location = CommonV1.Location()
        location.latitude = 47.6
        location.longitude = -122.3
        location.altitude = 120
        let messages = IngestionV1.IngestionProtoFile.metadata.messageTypes
        #expect(messages.contains { $0 == IngestionV1.DeliveryRequest.self })
        var request = IngestionV1.DeliveryRequest()
        var owner = CommonV1.Owner()
        owner.userId = "user-1"
        owner.accountId = "account-1"
        request.owner = owner
        request.deliveryId = "d-1"
        request.pickupLocation = location
        request.dropoffLocation = location
        let copy = try IngestionV1.DeliveryRequest(serializedBytes: request.serializedBytes())
        #expect(copy == request)
        #expect(try IngestionV1.DeliveryRequest(jsonString: try request.jsonString()) == request)
    }

    @Test("bad JSON names the path of the offending field")
    func errorPath() throws {
        let error = try #require(throws: JSONDecodingError.self) {
            try IngestionV1.DeliveryRequest(jsonString: #"{"packageInfo": {"weight": "heavy"}}"#)
        }
        #expect(error.description == #"packageInfo.weight: expected a number, got "heavy""#)
    }
}
