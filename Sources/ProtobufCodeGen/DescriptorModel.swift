// The generator's own view of the descriptors protoc hands it.
//
// protoc's descriptors arrive as protobuf-c structs (see DescriptorModel+ProtobufC.swift); they are
// copied once into these plain Swift values so that naming and emitting never touch C memory and
// can be tested on their own.

/// One .proto file.
public struct ProtoFile: Sendable, Hashable {
    /// Path relative to the include root, e.g. `fabrikam/dronedelivery/delivery/v1/delivery.proto`.
    public var name: String
    /// Proto package, e.g. `fabrikam.dronedelivery.delivery.v1`.
    public var package: String
    public var syntax: String
    public var dependencies: [String]
    public var messages: [ProtoMessage]
    public var enums: [ProtoEnum]
    public var services: [ProtoService]
    /// The FileDescriptorProto re-encoded without source info, for the reflection service
    /// (without its import of buf/validate/validate.proto: see `validateProtoFile`).
    public var serializedDescriptor: [UInt8]
    /// Comments attached to the `syntax`/`package` statements, kept for the file header.
    public var packageComment: String

    public init(name: String, package: String, syntax: String, dependencies: [String] = [],
                messages: [ProtoMessage] = [], enums: [ProtoEnum] = [], services: [ProtoService] = [],
                serializedDescriptor: [UInt8] = [], packageComment: String = "") {
        self.name = name
        self.package = package
        self.syntax = syntax
        self.dependencies = dependencies
        self.messages = messages
        self.enums = enums
        self.services = services
        self.serializedDescriptor = serializedDescriptor
        self.packageComment = packageComment
    }
}

/// A message type, with its nested types.
public struct ProtoMessage: Sendable, Hashable {
    public var name: String
    /// Fully qualified name without a leading dot, e.g. `pkg.Outer.Inner`.
    public var fullName: String
    public var fields: [ProtoField]
    public var oneofs: [ProtoOneof]
    public var nestedMessages: [ProtoMessage]
    public var nestedEnums: [ProtoEnum]
    public var isMapEntry: Bool
    public var comment: String
    /// The serialized `buf.validate.MessageRules` of `option (buf.validate.message)`, if any.
    public var validationRules: [UInt8]?

    public init(name: String, fullName: String, fields: [ProtoField] = [], oneofs: [ProtoOneof] = [],
                nestedMessages: [ProtoMessage] = [], nestedEnums: [ProtoEnum] = [],
                isMapEntry: Bool = false, comment: String = "", validationRules: [UInt8]? = nil) {
        self.validationRules = validationRules
        self.name = name
        self.fullName = fullName
        self.fields = fields
        self.oneofs = oneofs
        self.nestedMessages = nestedMessages
        self.nestedEnums = nestedEnums
        self.isMapEntry = isMapEntry
        self.comment = comment
    }
}

/// The scalar or composite kind of a field, numbered as in descriptor.proto.
public enum ProtoFieldType: Int32, Sendable, Hashable {
    case double = 1, float = 2, int64 = 3, uint64 = 4, int32 = 5, fixed64 = 6, fixed32 = 7
    case bool = 8, string = 9, group = 10, message = 11, bytes = 12, uint32 = 13, `enum` = 14
    case sfixed32 = 15, sfixed64 = 16, sint32 = 17, sint64 = 18
}

public struct ProtoField: Sendable, Hashable {
    public var name: String
    public var number: Int32
    public var type: ProtoFieldType
    /// For message and enum fields: the fully qualified type name without the leading dot.
    public var typeName: String
    public var isRepeated: Bool
    /// protoc's JSON name (lowerCamelCase, or the `json_name` option).
    public var jsonName: String
    /// Index into the containing message's `oneofs`, when the field is a oneof member.
    public var oneofIndex: Int?
    public var comment: String
    /// The serialized `buf.validate.FieldRules` of `[(buf.validate.field) = ...]`, if any.
    public var validationRules: [UInt8]?

    public init(name: String, number: Int32, type: ProtoFieldType, typeName: String = "",
                isRepeated: Bool = false, jsonName: String, oneofIndex: Int? = nil, comment: String = "",
                validationRules: [UInt8]? = nil) {
        self.validationRules = validationRules
        self.name = name
        self.number = number
        self.type = type
        self.typeName = typeName
        self.isRepeated = isRepeated
        self.jsonName = jsonName
        self.oneofIndex = oneofIndex
        self.comment = comment
    }
}

public struct ProtoOneof: Sendable, Hashable {
    public var name: String
    public var comment: String
    /// The serialized `buf.validate.OneofRules` of `option (buf.validate.oneof)`, if any.
    public var validationRules: [UInt8]?
    public init(name: String, comment: String = "", validationRules: [UInt8]? = nil) {
        self.validationRules = validationRules
        self.name = name
        self.comment = comment
    }
}

public struct ProtoEnum: Sendable, Hashable {
    public var name: String
    public var fullName: String
    public var values: [ProtoEnumValue]
    public var comment: String
    public init(name: String, fullName: String, values: [ProtoEnumValue], comment: String = "") {
        self.name = name
        self.fullName = fullName
        self.values = values
        self.comment = comment
    }
}

public struct ProtoEnumValue: Sendable, Hashable {
    public var name: String
    public var number: Int32
    public var comment: String
    public init(name: String, number: Int32, comment: String = "") {
        self.name = name
        self.number = number
        self.comment = comment
    }
}

public struct ProtoService: Sendable, Hashable {
    public var name: String
    public var fullName: String
    public var methods: [ProtoMethod]
    public var comment: String
    public init(name: String, fullName: String, methods: [ProtoMethod], comment: String = "") {
        self.name = name
        self.fullName = fullName
        self.methods = methods
        self.comment = comment
    }
}

public struct ProtoMethod: Sendable, Hashable {
    public var name: String
    public var inputType: String
    public var outputType: String
    public var clientStreaming: Bool
    public var serverStreaming: Bool
    /// The `google.api.http` option, when the method has one.
    public var httpRule: HTTPRuleModel?
    /// `option idempotency_level`, mapped to whether the call may be retried.
    public var isIdempotent: Bool
    public var comment: String
    public init(name: String, inputType: String, outputType: String, clientStreaming: Bool = false,
                serverStreaming: Bool = false, httpRule: HTTPRuleModel? = nil, isIdempotent: Bool = false,
                comment: String = "") {
        self.name = name
        self.inputType = inputType
        self.outputType = outputType
        self.clientStreaming = clientStreaming
        self.serverStreaming = serverStreaming
        self.httpRule = httpRule
        self.isIdempotent = isIdempotent
        self.comment = comment
    }
}

/// A parsed `google.api.HttpRule` (see google/api/http.proto).
public struct HTTPRuleModel: Sendable, Hashable {
    /// GET, PUT, POST, DELETE, PATCH, or the custom kind.
    public var method: String
    public var pattern: String
    public var body: String
    public var responseBody: String
    public var additionalBindings: [HTTPRuleModel]
    public init(method: String, pattern: String, body: String = "", responseBody: String = "",
                additionalBindings: [HTTPRuleModel] = []) {
        self.method = method
        self.pattern = pattern
        self.body = body
        self.responseBody = responseBody
        self.additionalBindings = additionalBindings
    }
}
