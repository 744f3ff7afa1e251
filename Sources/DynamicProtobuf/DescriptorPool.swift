import ProtobufCodeGen
import ProtobufKit

/// Message, enum and service descriptors known at run time: from a server's reflection service,
/// a protoset file, protoc's output for .proto files, or the descriptors generated code embeds.
///
/// Files are read with protobuf-c through the code generator's descriptor model
/// (`ProtobufCodeGen.ProtoFile`), so the CLI and the generator see a file the same way.
public struct DescriptorPool: Sendable {
    public private(set) var files: [String: ProtoFile] = [:]
    public private(set) var messages: [String: ProtoMessage] = [:]
    public private(set) var enums: [String: ProtoEnum] = [:]
    /// Services by full name, with the file that declares them.
    public private(set) var services: [String: (service: ProtoService, file: String)] = [:]

    public init() {}

    /// A pool of serialized `FileDescriptorProto`s (any order; dependencies may come later).
    public init(fileDescriptorProtos: [[UInt8]]) throws {
        try add(fileDescriptorProtos: fileDescriptorProtos)
    }

    /// A pool of a serialized `FileDescriptorSet` (protoc's `--descriptor_set_out`, a protoset).
    public init(fileDescriptorSet bytes: [UInt8]) throws {
        try add(files: try CodeGeneratorRequest(descriptorSet: bytes).files)
    }

    /// The files of generated code (`SomeProtoFile.metadata`).
    public init(generated: [ProtoFileMetadata]) throws {
        try add(fileDescriptorProtos: generated.map(\.serializedDescriptor))
    }

    public mutating func add(fileDescriptorProtos: [[UInt8]]) throws {
        // A FileDescriptorSet is its files as field 1, so the set is built by framing each one.
        var set: [UInt8] = []
        for file in fileDescriptorProtos {
            set.append(0x0A)
            var length = UInt64(file.count)
            while length >= 0x80 {
                set.append(UInt8(length & 0x7F) | 0x80)
                length >>= 7
            }
            set.append(UInt8(length))
            set += file
        }
        try add(files: try CodeGeneratorRequest(descriptorSet: set).files)
    }

    public mutating func add(files newFiles: [ProtoFile]) throws {
        for file in newFiles where files[file.name] == nil {
            files[file.name] = file
            for message in file.messages { register(message) }
            for value in file.enums { enums[value.fullName] = value }
            for service in file.services { services[service.fullName] = (service, file.name) }
        }
    }

    private mutating func register(_ message: ProtoMessage) {
        var message = message
        // Descriptors from some runtimes carry no json_name: protoc's rule gives it.
        for index in message.fields.indices where message.fields[index].jsonName.isEmpty {
            message.fields[index].jsonName = Self.jsonName(message.fields[index].name)
        }
        messages[message.fullName] = message
        for nested in message.nestedMessages { register(nested) }
        for value in message.nestedEnums { enums[value.fullName] = value }
    }

    /// protoc's default JSON name: underscores removed, the letter after each upper-cased.
    public static func jsonName(_ protoName: String) -> String {
        var result = ""
        var upperNext = false
        for character in protoName {
            if character == "_" {
                upperNext = true
            } else if upperNext {
                result += character.uppercased()
                upperNext = false
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// Imports no file of the pool declares (reflection asks for them next).
    public var missingDependencies: [String] {
        Array(Set(files.values.flatMap(\.dependencies)).subtracting(files.keys)).sorted()
    }

    public func message(_ fullName: String) throws -> ProtoMessage {
        guard let message = messages[fullName] else { throw DynamicCodecError("message type \(fullName) is not described") }
        return message
    }

    /// A method by `package.Service/Method`, `package.Service.Method` or `/package.Service/Method`.
    public func method(_ name: String) throws -> (service: ProtoService, method: ProtoMethod) {
        var text = name.hasPrefix("/") ? String(name.dropFirst()) : name
        if !text.contains("/"), let dot = text.lastIndex(of: ".") { text.replaceSubrange(dot...dot, with: "/") }
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw DynamicCodecError("\"\(name)\" is not SERVICE/METHOD (for example grpc.health.v1.Health/Check)") }
        guard let service = services[parts[0]]?.service else {
            throw DynamicCodecError("service \(parts[0]) is not described (known: \(services.keys.sorted().joined(separator: ", ")))")
        }
        guard let method = service.methods.first(where: { $0.name == parts[1] }) else {
            throw DynamicCodecError("service \(parts[0]) has no method \(parts[1]) (it has: \(service.methods.map(\.name).joined(separator: ", ")))")
        }
        return (service, method)
    }

    /// The runtime's descriptor for a method.
    public func methodDescriptor(service: ProtoService, method: ProtoMethod) -> MethodDescriptor {
        MethodDescriptor(service: service.fullName, name: method.name, inputType: method.inputType, outputType: method.outputType,
                         clientStreaming: method.clientStreaming, serverStreaming: method.serverStreaming,
                         isIdempotent: method.isIdempotent, httpRule: method.httpRule.map(Self.httpRule))
    }

    static func httpRule(_ rule: HTTPRuleModel) -> HTTPRule {
        HTTPRule(method: rule.method, pattern: rule.pattern, body: rule.body, responseBody: rule.responseBody,
                 additionalBindings: rule.additionalBindings.map(httpRule))
    }

    /// The JSON names along a path of proto field names from `type`
    /// (`["package_info", "weight"]` -> `["packageInfo", "weight"]`).
    public func jsonPath(_ protoPath: [String], from type: String) throws -> [String] {
        var current = try message(type)
        var result: [String] = []
        for (index, name) in protoPath.enumerated() {
            guard let field = current.fields.first(where: { $0.name == name }) else {
                throw DynamicCodecError("\(current.fullName) has no field \(name)")
            }
            result.append(field.jsonName)
            if index < protoPath.count - 1 {
                guard field.type == .message else { throw DynamicCodecError("\(current.fullName).\(name) is not a message") }
                current = try message(field.typeName)
            }
        }
        return result
    }
}

/// A dynamic message could not be encoded or decoded, or a type is not described.
public struct DynamicCodecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
