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
        p.line()
        try emitHandlerProtocol(service, into: &p)
        p.line()
        try emitClient(service, into: &p)
        p.outdent()
        p.line("}")
        p.outdent()
        p.line("}")
        p.line()
        try emitRegistration(service, file: file, scope: scope, into: &p)
    }

    /// `UnaryCall` -> `unaryCall`.
    func handlerName(_ method: ProtoMethod) -> String {
        SwiftNames.escaped(SwiftNames.lowerCamel(method.name.prefix(1).lowercased() + method.name.dropFirst()))
    }

    /// The protocol a server implements: one async method per RPC, shaped by its streaming.
    func emitHandlerProtocol(_ service: ProtoService, into p: inout CodePrinter) throws {
        p.line("/// Implement to serve `\(service.fullName)`; add it to a router with `register(in:)`.")
        p.line("public protocol Handler: Sendable {")
        p.indent()
        for (index, method) in service.methods.enumerated() {
            if index > 0 { p.line() }
            let input = try info(method.inputType).swiftName
            let output = try info(method.outputType).swiftName
            p.docComment(method.comment)
            switch (method.clientStreaming, method.serverStreaming) {
            case (false, false):
                p.line("func \(handlerName(method))(_ request: \(input), context: RPC.ServerContext) async throws -> \(output)")
            case (false, true):
                p.line("func \(handlerName(method))(_ request: \(input), writer: RPC.ResponseWriter<\(output)>, context: RPC.ServerContext) async throws")
            case (true, false):
                p.line("func \(handlerName(method))(_ requests: RPC.RequestStream<\(input)>, context: RPC.ServerContext) async throws -> \(output)")
            case (true, true):
                p.line("func \(handlerName(method))(_ requests: RPC.RequestStream<\(input)>, writer: RPC.ResponseWriter<\(output)>, context: RPC.ServerContext) async throws")
            }
        }
        p.outdent()
        p.line("}")
    }

    /// A typed client: one method per RPC over an `RPCClient`.
    func emitClient(_ service: ProtoService, into p: inout CodePrinter) throws {
        p.line("/// Calls `\(service.fullName)` on a server.")
        p.line("public struct Client: Sendable {")
        p.indent()
        p.line("public let rpc: RPC.RPCClient")
        p.line()
        p.line("public init(_ rpc: RPC.RPCClient) { self.rpc = rpc }")
        for method in service.methods {
            p.line()
            let input = try info(method.inputType).swiftName
            let output = try info(method.outputType).swiftName
            p.docComment(method.comment)
            let spec = "Method.\(method.name).self"
            switch (method.clientStreaming, method.serverStreaming) {
            case (false, false):
                p.line("public func \(handlerName(method))(_ request: \(input), options: RPC.CallOptions = RPC.CallOptions()) async throws -> \(output) {")
                p.line("    try await rpc.unary(\(spec), request, options: options)")
                p.line("}")
            case (false, true):
                p.line("public func \(handlerName(method))<Result: Sendable>(_ request: \(input), options: RPC.CallOptions = RPC.CallOptions(), _ body: (RPC.ResponseStream<\(output)>) async throws -> Result) async throws -> Result {")
                p.line("    try await rpc.serverStreaming(\(spec), request, options: options, body)")
                p.line("}")
            case (true, false):
                p.line("public func \(handlerName(method))(options: RPC.CallOptions = RPC.CallOptions(), _ body: (RPC.RequestWriter<\(input)>) async throws -> Void) async throws -> \(output) {")
                p.line("    try await rpc.clientStreaming(\(spec), options: options, body).message")
                p.line("}")
            case (true, true):
                p.line("public func \(handlerName(method))<Result: Sendable>(options: RPC.CallOptions = RPC.CallOptions(), _ body: (RPC.RequestWriter<\(input)>, RPC.ResponseStream<\(output)>) async throws -> Result) async throws -> Result {")
                p.line("    try await rpc.bidirectional(\(spec), options: options, body)")
                p.line("}")
            }
        }
        p.outdent()
        p.line("}")
    }

    /// `handler.register(in: &router)`: every method of the service, routed to the handler.
    func emitRegistration(_ service: ProtoService, file: ProtoFile, scope: String, into p: inout CodePrinter) throws {
        let name = "\(scope).\(serviceTypeName(service, file: file))"
        p.line("extension \(name).Handler {")
        p.indent()
        p.line("/// Routes every method of `\(service.fullName)` to this handler.")
        p.line("public func register(in router: inout RPC.Router) {")
        p.indent()
        for method in service.methods {
            let spec = "\(name).Method.\(method.name).self"
            let call = handlerName(method)
            switch (method.clientStreaming, method.serverStreaming) {
            case (false, false):
                p.line("router.unary(\(spec)) { try await self.\(call)($0, context: $1) }")
            case (false, true):
                p.line("router.serverStreaming(\(spec)) { try await self.\(call)($0, writer: $1, context: $2) }")
            case (true, false):
                p.line("router.clientStreaming(\(spec)) { try await self.\(call)($0, context: $1) }")
            case (true, true):
                p.line("router.bidirectional(\(spec)) { try await self.\(call)($0, writer: $1, context: $2) }")
            }
        }
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
