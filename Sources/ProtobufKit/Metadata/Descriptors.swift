/// A parsed `google.api.http` rule: how a method is reached over JSON/HTTP (see
/// google/api/http.proto). The gateway builds its routes from these.
public struct HTTPRule: Sendable, Hashable {
    /// `GET`, `PUT`, `POST`, `DELETE`, `PATCH`, or a custom verb.
    public var method: String
    /// Path template, for example `/v1/deliveries/{delivery_id}`.
    public var pattern: String
    /// Request field mapped from the body: `*` (all fields not bound by the path), a field name,
    /// or empty (no body).
    public var body: String
    /// Response field sent as the body; empty means the whole response.
    public var responseBody: String
    public var additionalBindings: [HTTPRule]

    public init(method: String, pattern: String, body: String = "", responseBody: String = "", additionalBindings: [HTTPRule] = []) {
        self.method = method
        self.pattern = pattern
        self.body = body
        self.responseBody = responseBody
        self.additionalBindings = additionalBindings
    }
}

/// A method as the wire knows it: its path, streaming shape and HTTP mapping.
public struct MethodDescriptor: Sendable, Hashable {
    /// Fully qualified service name, for example `grpc.health.v1.Health`.
    public var service: String { didSet { path = Self.path(service, name) } }
    public var name: String { didSet { path = Self.path(service, name) } }
    public var inputType: String
    public var outputType: String
    public var clientStreaming: Bool
    public var serverStreaming: Bool
    /// Declared `idempotency_level` NO_SIDE_EFFECTS or IDEMPOTENT: safe to retry.
    public var isIdempotent: Bool
    public var httpRule: HTTPRule?

    /// The HTTP/2 `:path` of the method, `/package.Service/Method` (kept, not rebuilt per call).
    public private(set) var path: String

    private static func path(_ service: String, _ name: String) -> String { "/\(service)/\(name)" }

    public init(service: String, name: String, inputType: String, outputType: String, clientStreaming: Bool,
                serverStreaming: Bool, isIdempotent: Bool, httpRule: HTTPRule?) {
        self.service = service
        self.name = name
        self.path = Self.path(service, name)
        self.inputType = inputType
        self.outputType = outputType
        self.clientStreaming = clientStreaming
        self.serverStreaming = serverStreaming
        self.isIdempotent = isIdempotent
        self.httpRule = httpRule
    }
}

/// A service: its full name, the file that declares it, and its methods.
public struct ServiceDescriptor: Sendable, Hashable {
    public var fullName: String
    public var file: String
    public var methods: [MethodDescriptor]
    public init(fullName: String, file: String, methods: [MethodDescriptor]) {
        self.fullName = fullName
        self.file = file
        self.methods = methods
    }
}

/// Generated per method: the message types and descriptor, for typed clients and servers.
public protocol MethodSpec {
    associatedtype Input: Message
    associatedtype Output: Message
    static var descriptor: MethodDescriptor { get }
}

/// What one .proto file declares, for type registries and the reflection service.
public struct ProtoFileMetadata: Sendable {
    public var name: String
    public var package: String
    public var dependencies: [String]
    public var messageTypes: [any Message.Type]
    public var services: [ServiceDescriptor]
    private var serializedDescriptorBase64: String

    public init(name: String, package: String, dependencies: [String], messageTypes: [any Message.Type],
                services: [ServiceDescriptor], serializedDescriptorBase64: String) {
        self.name = name
        self.package = package
        self.dependencies = dependencies
        self.messageTypes = messageTypes
        self.services = services
        self.serializedDescriptorBase64 = serializedDescriptorBase64
    }

    /// The file's `google.protobuf.FileDescriptorProto`, serialized (without source comments).
    public var serializedDescriptor: [UInt8] { Base64.decode(serializedDescriptorBase64) ?? [] }
}
