// Metadata that protobuf-c does not carry: method paths, streaming flags, idempotency, parsed
// `google.api.http` rules, and each file's serialized FileDescriptorProto for reflection.

extension SwiftGenerator {
    /// Swift name of the caseless enum that carries a service's metadata.
    func serviceTypeName(_ service: ProtoService, file: ProtoFile) -> String {
        let prefix = file.package.isEmpty ? "" : file.package + "."
        let clash = types[prefix + service.name] != nil
        return clash ? service.name + "Service" : service.name
    }

    func emitService(_ service: ProtoService, file: ProtoFile, scope: String, into p: inout CodePrinter) throws {
        let name = serviceTypeName(service, file: file)
        p.line("extension \(scope) {")
        p.indent()
        p.docComment(service.comment)
        p.line("public enum \(name) {")
        p.indent()
        p.line("/// The service's name and methods, as the wire and the reflection service know them.")
        p.line("public static let descriptor = ProtobufKit.ServiceDescriptor(")
        p.line("    fullName: \(service.fullName.swiftLiteral),")
        p.line("    file: \(file.name.swiftLiteral),")
        p.line("    methods: [\(service.methods.map { "Method.\($0.name).descriptor" }.joined(separator: ", "))]")
        p.line(")")
        p.line()
        p.line("/// One caseless enum per method: its message types and descriptor.")
        p.line("public enum Method {")
        p.indent()
        for (index, method) in service.methods.enumerated() {
            if index > 0 { p.line() }
            let input = try info(method.inputType)
            let output = try info(method.outputType)
            p.docComment(method.comment)
            p.line("public enum \(method.name): ProtobufKit.MethodSpec {")
            p.indent()
            p.line("public typealias Input = \(input.swiftName)")
            p.line("public typealias Output = \(output.swiftName)")
            p.line("public static let descriptor = ProtobufKit.MethodDescriptor(")
            p.indent()
            p.line("service: \(service.fullName.swiftLiteral),")
            p.line("name: \(method.name.swiftLiteral),")
            p.line("inputType: \(method.inputType.swiftLiteral),")
            p.line("outputType: \(method.outputType.swiftLiteral),")
            p.line("clientStreaming: \(method.clientStreaming),")
            p.line("serverStreaming: \(method.serverStreaming),")
            p.line("isIdempotent: \(method.isIdempotent),")
            p.line("httpRule: \(method.httpRule.map(httpRuleLiteral) ?? "nil")")
            p.outdent()
            p.line(")")
            p.outdent()
            p.line("}")
        }
        p.outdent()
        p.line("}")
        p.outdent()
        p.line("}")
        p.outdent()
        p.line("}")
    }

    func httpRuleLiteral(_ rule: HTTPRuleModel) -> String {
        var text = "ProtobufKit.HTTPRule(method: \(rule.method.swiftLiteral), pattern: \(rule.pattern.swiftLiteral)"
        if !rule.body.isEmpty { text += ", body: \(rule.body.swiftLiteral)" }
        if !rule.responseBody.isEmpty { text += ", responseBody: \(rule.responseBody.swiftLiteral)" }
        if !rule.additionalBindings.isEmpty {
            text += ", additionalBindings: [\(rule.additionalBindings.map(httpRuleLiteral).joined(separator: ", "))]"
        }
        return text + ")"
    }

    /// `fabrikam/testing/v1/test_messages.proto` -> `TestMessagesProtoFile`.
    func fileTypeName(_ file: ProtoFile) -> String {
        let base = file.name.split(separator: "/").last.map(String.init) ?? file.name
        let stem = base.hasSuffix(".proto") ? String(base.dropLast(6)) : base
        return SwiftNames.upperCamel(stem.replacingDashes) + "ProtoFile"
    }

    func emitFileMetadata(_ file: ProtoFile, scope: String, typesGenerated: Bool = true, into p: inout CodePrinter) throws {
        let messages = typesGenerated ? allMessages(file.messages).filter { !$0.isMapEntry } : []
        let services = typesGenerated ? file.services.map { serviceTypeName($0, file: file) + ".descriptor" } : []
        p.line("extension \(scope) {")
        p.indent()
        p.line("/// What `\(file.name)` declares, for registries and the reflection service.")
        p.line("public enum \(fileTypeName(file)) {")
        p.indent()
        p.line("public static let metadata = ProtobufKit.ProtoFileMetadata(")
        p.indent()
        p.line("name: \(file.name.swiftLiteral),")
        p.line("package: \(file.package.swiftLiteral),")
        p.line("dependencies: [\(file.dependencies.map(\.swiftLiteral).joined(separator: ", "))],")
        p.line("messageTypes: [\(try messages.map { try info($0.fullName).swiftName + ".self" }.joined(separator: ", "))],")
        p.line("services: [\(services.joined(separator: ", "))],")
        p.line("serializedDescriptorBase64: \(base64(file.serializedDescriptor).swiftLiteral)")
        p.outdent()
        p.line(")")
        p.outdent()
        p.line("}")
        p.outdent()
        p.line("}")
    }

    func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = ""
        var index = 0
        while index < bytes.count {
            let b0 = UInt32(bytes[index])
            let b1 = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
            let b2 = index + 2 < bytes.count ? UInt32(bytes[index + 2]) : 0
            let triple = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(triple >> 18 & 63)])
            out.append(alphabet[Int(triple >> 12 & 63)])
            out.append(index + 1 < bytes.count ? alphabet[Int(triple >> 6 & 63)] : "=")
            out.append(index + 2 < bytes.count ? alphabet[Int(triple & 63)] : "=")
            index += 3
        }
        return out
    }
}

extension String {
    var replacingDashes: String { String(map { $0 == "-" || $0 == "." ? "_" : $0 }) }
}
