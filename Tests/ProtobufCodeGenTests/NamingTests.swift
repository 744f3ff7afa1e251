import Foundation
import Testing
import TestSupport
@testable import ProtobufCodeGen

@Suite("Naming rules")
struct NamingTests {
    @Test("Swift names", arguments: [
        ("delivery_id", "deliveryId"), ("package_info", "packageInfo"), ("x", "x"),
        ("already_camelCase", "alreadyCamelCase"), ("FOO_BAR", "fooBar"),
    ])
    func lowerCamel(input: String, expected: String) {
        #expect(SwiftNames.lowerCamel(input) == expected)
    }

    @Test("enum cases drop the enum-name prefix", arguments: [
        ("DELIVERY_STAGE_HEADED_TO_PICKUP", "DeliveryStage", "headedToPickup"),
        ("SERVICE_UNKNOWN", "ServingStatus", "serviceUnknown"),
        ("SIZE_1X", "Size", "size1x"),
        ("HTTP_RULE_GET", "HTTPRule", "get"),
    ])
    func enumCases(value: String, enumName: String, expected: String) {
        #expect(SwiftNames.enumCaseName(value, enumName: enumName) == expected)
    }

    /// The C names the generated Swift uses must be the ones protoc-c actually emitted: every
    /// message of every committed proto is looked up in protoc-c's headers.
    @Test("protoc-c names match protoc-c's own output for every message in proto/")
    func protobufCNamesMatchProtocC() throws {
        let proto = repositoryRoot.appendingPathComponent("proto")
        let files = try FileManager.default.subpathsOfDirectory(atPath: proto.path).filter { $0.hasSuffix(".proto") }
        var checked = 0
        for file in files {
            let request = try descriptorRequest(for: file, includes: [proto.path, "/usr/include"], parameter: "")
            guard let descriptor = request.files.last else { continue }
            let headerPath = try #require(headerFor(file))
            let header = try String(contentsOfFile: headerPath, encoding: .utf8)
            func visit(_ message: ProtoMessage) {
                let structName = ProtobufCNames.structName(fullName: message.fullName)
                let initName = ProtobufCNames.functionPrefix(fullName: message.fullName) + "__init"
                let hasStruct = header.contains("struct  \(structName)\n")
                let hasInit = header.contains("\(initName)\n")
                #expect(hasStruct, "\(file): no struct \(structName)")
                #expect(hasInit, "\(file): no \(initName)")
                for field in message.fields where field.oneofIndex == nil {
                    let member = ProtobufCNames.fieldName(field.name)
                    let hasMember = [" \(member);", "*\(member);", " \(member) PROTOBUF_C__DEPRECATED;", "*\(member) PROTOBUF_C__DEPRECATED;"].contains { header.contains($0) }
                    #expect(hasMember, "\(file): no member \(member) in \(structName)")
                }
                checked += 1
                message.nestedMessages.forEach(visit)
            }
            descriptor.messages.forEach(visit)
        }
        #expect(checked > 100)
    }

    func headerFor(_ protoFile: String) -> String? {
        let stem = String(protoFile.dropLast(".proto".count))
        for target in ["Sources/CWellKnownProtos", "Sources/CGRPCProtos", "Sources/CDroneDeliveryAPI", "Tests/Fixtures/CTestMessages"] {
            let path = repositoryRoot.appendingPathComponent("\(target)/include/\(stem).pb-c.h").path
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }
}
