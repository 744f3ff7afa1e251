// Turns a CodeGeneratorRequest into one Swift file per .proto.
//
// Generated code stands on ProtobufKit: messages are value types whose wire encoding is done by
// protobuf-c (the generated code fills and reads the structs protoc-c generated for the same file),
// and whose JSON mapping, enum names, method paths and HTTP rules come from metadata emitted here.

/// Options given with `--swiftpbc_opt` (comma separated `key=value` pairs).
public struct GeneratorOptions: Sendable, Hashable {
    /// Swift module that the generated files are compiled into.
    public var module: String = "GeneratedProtos"
    /// C module holding protoc-c's output for the generated files.
    public var cModule: String = "CGeneratedProtos"
    /// For imported files outside this run: proto path prefix -> (Swift module, C module).
    /// Files (by path prefix) for which only the metadata enum is emitted: their descriptor for
    /// reflection, no types (for example google/api/*.proto and descriptor.proto).
    public var metadataOnly: [String] = []
    public var moduleMap: [(prefix: String, module: String, cModule: String)] = [
        ("google/protobuf/", "ProtobufKit", "CWellKnownProtos"),
    ]

    public init() {}

    /// Parses `Module=X,CModule=Y,Map=prefix:Swift:C,...`.
    public init(parameter: String) throws {
        self.init()
        for pair in parameter.split(separator: ",") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw GeneratorError("option '\(pair)' is not key=value") }
            switch parts[0] {
            case "Module": module = parts[1]
            case "CModule": cModule = parts[1]
            case "MetadataOnly": metadataOnly.append(parts[1])
            case "Map":
                let fields = parts[1].split(separator: ":").map(String.init)
                guard fields.count == 3 else { throw GeneratorError("Map expects prefix:SwiftModule:CModule, got '\(parts[1])'") }
                moduleMap.insert((fields[0], fields[1], fields[2]), at: 0)
            default: throw GeneratorError("unknown option '\(parts[0])' (known: Module, CModule, Map, MetadataOnly)")
            }
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.module == rhs.module && lhs.cModule == rhs.cModule
            && lhs.moduleMap.map { "\($0.prefix):\($0.module):\($0.cModule)" } == rhs.moduleMap.map { "\($0.prefix):\($0.module):\($0.cModule)" }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(module)
        hasher.combine(cModule)
    }
}

/// A generation failure reported back to protoc.
public struct GeneratorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The well-known types whose JSON form is special; ProtobufKit implements their JSON by hand.
let wellKnownTypesWithSpecialJSON: Set<String> = [
    "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.Timestamp",
    "google.protobuf.FieldMask", "google.protobuf.Struct", "google.protobuf.Value",
    "google.protobuf.ListValue", "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
    "google.protobuf.Int64Value", "google.protobuf.UInt64Value", "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value", "google.protobuf.BoolValue", "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
]

/// What the generator knows about every named type in the request.
struct TypeInfo {
    enum Kind { case message, `enum` }
    var kind: Kind
    var fullName: String
    /// Fully qualified Swift name, module first.
    var swiftName: String
    /// protoc-c's struct (messages) or enum type name.
    var cName: String
    /// protoc-c's function prefix (`pkg__msg`), for `<prefix>__init`.
    var cFunctionPrefix: String
    var message: ProtoMessage?
    var file: String
}

public struct SwiftGenerator {
    let request: CodeGeneratorRequest
    let options: GeneratorOptions
    var types: [String: TypeInfo] = [:]
    /// Message full name -> full names of messages reachable through singular fields.
    var singularEdges: [String: [String]] = [:]
    /// Message full name -> full names of messages reachable through any field.
    var allEdges: [String: [String]] = [:]
    /// Full names of messages that declare a string field themselves (map entries included).
    var messagesWithStrings: Set<String> = []
    /// Full names of messages with field rules (buf.validate), their own or their fields'.
    var validatedMessages: Set<String> = []

    public init(request: CodeGeneratorRequest) throws {
        self.request = request
        self.options = try GeneratorOptions(parameter: request.parameter)
        for file in request.files {
            // The `Google` namespace belongs to ProtobufKit; other modules extend it, so types
            // of google.* packages are named through ProtobufKit wherever they are declared.
            let module = file.package.hasPrefix("google.") ? "ProtobufKit" : moduleFor(file: file.name)
            let namespace = SwiftNames.namespaceComponents(package: file.package)
            for message in file.messages {
                register(message, swiftParent: module + "." + namespace.joined(separator: "."), file: file.name)
            }
            for value in file.enums {
                register(value, swiftParent: module + "." + namespace.joined(separator: "."), file: file.name)
            }
        }
        validatedMessages = computeValidatedMessages()
    }

    func moduleFor(file: String) -> String {
        if request.filesToGenerate.contains(file) { return options.module }
        for entry in options.moduleMap where file.hasPrefix(entry.prefix) { return entry.module }
        return options.module
    }

    func cModuleFor(file: String) -> String {
        if request.filesToGenerate.contains(file) { return options.cModule }
        for entry in options.moduleMap where file.hasPrefix(entry.prefix) { return entry.cModule }
        return options.cModule
    }

    private mutating func register(_ message: ProtoMessage, swiftParent: String, file: String) {
        let swiftName = swiftParent + "." + SwiftNames.typeName(message.name)
        types[message.fullName] = TypeInfo(
            kind: .message, fullName: message.fullName, swiftName: swiftName,
            cName: ProtobufCNames.structName(fullName: message.fullName),
            cFunctionPrefix: ProtobufCNames.functionPrefix(fullName: message.fullName),
            message: message, file: file)
        singularEdges[message.fullName] = message.fields
            .filter { $0.type == .message && !$0.isRepeated }
            .map(\.typeName)
        allEdges[message.fullName] = message.fields.filter { $0.type == .message }.map(\.typeName)
        if message.fields.contains(where: { $0.type == .string }) { messagesWithStrings.insert(message.fullName) }
        for nested in message.nestedMessages { register(nested, swiftParent: swiftName, file: file) }
        for nested in message.nestedEnums { register(nested, swiftParent: swiftName, file: file) }
    }

    private mutating func register(_ value: ProtoEnum, swiftParent: String, file: String) {
        types[value.fullName] = TypeInfo(
            kind: .enum, fullName: value.fullName,
            swiftName: swiftParent + "." + SwiftNames.typeName(value.name),
            cName: ProtobufCNames.structName(fullName: value.fullName),
            cFunctionPrefix: ProtobufCNames.functionPrefix(fullName: value.fullName),
            message: nil, file: file)
    }

    func info(_ fullName: String) throws -> TypeInfo {
        guard let info = types[fullName] else { throw GeneratorError("unknown type \(fullName)") }
        return info
    }

    /// Whether `from` can reach `to` through singular message fields (so a field of type `from`
    /// inside `to` would make the value type infinitely large without a box).
    func reaches(_ from: String, _ to: String, throughRepeated: Bool = false) -> Bool {
        var seen: Set<String> = []
        var stack = [from]
        while let next = stack.popLast() {
            if next == to { return true }
            guard seen.insert(next).inserted else { continue }
            stack += (throughRepeated ? allEdges[next] : singularEdges[next]) ?? []
        }
        return false
    }

    /// Whether a message can contain itself through any chain of fields.
    func isRecursive(_ fullName: String) -> Bool {
        (allEdges[fullName] ?? []).contains { reaches($0, fullName, throughRepeated: true) }
    }

    /// Whether decoding a message must scan its input first (`Message._needsWireScan`): some
    /// message it can contain (itself included) holds a string field, or contains itself and so
    /// can nest without bound. A message with a `google.protobuf.Struct` field is one: Struct
    /// does not contain itself directly, but Value and ListValue lead back to it.
    func needsWireScan(_ fullName: String) -> Bool {
        var seen: Set<String> = []
        var stack = [fullName]
        while let next = stack.popLast() {
            guard seen.insert(next).inserted else { continue }
            if messagesWithStrings.contains(next) || isRecursive(next) { return true }
            stack += allEdges[next] ?? []
        }
        return false
    }

    /// Generates every requested file.
    public func generate() throws -> [GeneratedFile] {
        var declared: Set<String> = []
        // The runtime module owns the `Google` root and `Google.Protobuf`.
        if options.module != "ProtobufKit" { declared.insert("Google"); declared.insert("Google.Protobuf") }
        var outputs: [GeneratedFile] = []
        for name in request.filesToGenerate {
            guard let file = request.files.first(where: { $0.name == name }) else {
                throw GeneratorError("protoc asked for \(name) but did not send it")
            }
            let metadataOnly = options.metadataOnly.contains { name.hasPrefix($0) }
            guard file.syntax == "proto3" || metadataOnly else {
                throw GeneratorError("\(name): only proto3 files are supported (found \(file.syntax))")
            }
            outputs.append(GeneratedFile(name: outputName(for: name), content: try generate(file, metadataOnly: metadataOnly, declaredNamespaces: &declared)))
        }
        return outputs
    }

    /// `grpc/reflection/v1/reflection.proto` -> `grpc_reflection_v1_reflection.pb.swift`: flat and
    /// unique, because SwiftPM names object files by base name and two `reflection.pb.swift`
    /// in one module would collide.
    func outputName(for protoName: String) -> String {
        let base = protoName.hasSuffix(".proto") ? String(protoName.dropLast(6)) : protoName
        return String(base.map { $0 == "/" ? "_" : $0 }) + ".pb.swift"
    }

    func generate(_ file: ProtoFile, metadataOnly: Bool = false, declaredNamespaces: inout Set<String>) throws -> String {
        var p = CodePrinter()
        p.line("// DO NOT EDIT.")
        p.line("// Generated by protoc-gen-swiftpbc from \(file.name).")
        p.line("// Regenerate with `make proto`.")
        p.line()
        if metadataOnly {
            p.line("// Only the file's descriptor, for reflection: no Swift types are generated for it.")
        } else {
            p.line("// The wire encoding is protobuf-c's: these types convert to and from the C structs")
            p.line("// that protoc-c generated for the same file.")
        }
        p.line()
        var imports: Set<String> = []
        var cImports: Set<String> = metadataOnly ? [] : ["CProtobufC", cModuleFor(file: file.name)]
        if options.module != "ProtobufKit" { imports.insert("ProtobufKit") }
        // Services get a handler protocol and a client, which stand on the RPC runtime.
        if !file.services.isEmpty && !metadataOnly { imports.insert("RPC") }
        for dependency in file.dependencies where !metadataOnly {
            let module = moduleFor(file: dependency)
            if module != options.module { imports.insert(module) }
            cImports.insert(cModuleFor(file: dependency))
        }
        for module in imports.sorted() { p.line("public import \(module)") }
        for module in cImports.sorted() { p.line("internal import \(module)") }
        p.line()

        // Namespaces: one caseless enum per package component, declared once per module.
        let components = SwiftNames.namespaceComponents(package: file.package)
        for depth in components.indices {
            let path = components[0...depth].joined(separator: ".")
            guard declaredNamespaces.insert(path).inserted else { continue }
            if depth == 0 {
                p.line("/// Namespace of the `\(file.package.split(separator: ".")[0])` proto packages.")
                p.line("public enum \(components[0]) {}")
            } else {
                let parent = components[0..<depth].joined(separator: ".")
                p.block("extension \(parent)") { p in
                    p.line("/// Namespace of proto package `\(file.package.split(separator: ".").prefix(depth + 1).joined(separator: "."))`.")
                    p.line("public enum \(components[depth]) {}")
                }
            }
            p.line()
        }
        let namespace = components.joined(separator: ".")
        let scope = namespace.isEmpty ? options.module : namespace

        if metadataOnly {
            try emitFileMetadata(file, scope: scope, typesGenerated: false, into: &p)
            return p.text
        }
        if !file.messages.isEmpty || !file.enums.isEmpty {
            p.line("extension \(scope) {")
            p.indent()
            var first = true
            for value in file.enums {
                if !first { p.line() }
                first = false
                emitEnum(value, into: &p)
            }
            for message in file.messages {
                if !first { p.line() }
                first = false
                try emitMessageType(message, into: &p)
            }
            p.outdent()
            p.line("}")
            p.line()
        }
        for message in allMessages(file.messages) where !message.isMapEntry {
            try emitMessageConformance(message, into: &p)
            p.line()
        }
        for service in file.services {
            try emitService(service, file: file, scope: scope, into: &p)
            p.line()
        }
        try emitFileMetadata(file, scope: scope, into: &p)
        return p.text
    }

    func allMessages(_ messages: [ProtoMessage]) -> [ProtoMessage] {
        messages.flatMap { [$0] + allMessages($0.nestedMessages) }
    }
}
