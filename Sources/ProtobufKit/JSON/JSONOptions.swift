/// Options for writing JSON.
public struct JSONEncodingOptions: Sendable {
    /// Also write fields that have no presence and hold their default (0, "", false, empty lists
    /// and maps). Message fields and oneof members are written only when set, as the spec says.
    public var alwaysPrintFieldsWithNoPresence = false
    /// Use the proto field names (`package_info`) instead of the JSON names (`packageInfo`).
    public var preserveProtoFieldNames = false
    /// Write enum values as numbers instead of names.
    public var enumsAsIntegers = false
    /// Message types that `google.protobuf.Any` values may contain.
    public var typeRegistry: TypeRegistry = .wellKnownTypes

    public init() {}

    /// `.defaults { $0.alwaysPrintFieldsWithNoPresence = true }`
    public static func defaults(_ configure: (inout Self) -> Void) -> Self {
        var options = Self()
        configure(&options)
        return options
    }
}

/// Options for reading JSON.
public struct JSONDecodingOptions: Sendable {
    /// Skip object members that name no field (and enum names this schema does not know)
    /// instead of failing.
    public var ignoreUnknownFields = false
    /// Message types that `google.protobuf.Any` values may contain.
    public var typeRegistry: TypeRegistry = .wellKnownTypes

    public init() {}

    public static func defaults(_ configure: (inout Self) -> Void) -> Self {
        var options = Self()
        configure(&options)
        return options
    }
}

/// Message types known by name, so `google.protobuf.Any` can be read and written as JSON.
public struct TypeRegistry: Sendable {
    private var types: [String: any Message.Type] = [:]

    public init(_ types: [any Message.Type] = []) {
        for type in types { self.types[type.protoMessageName] = type }
    }

    /// Adds the messages of generated files (`SomeProtoFile.metadata`).
    public init(files: [ProtoFileMetadata]) {
        self.init(files.flatMap(\.messageTypes))
    }

    public mutating func register(_ type: any Message.Type) { types[type.protoMessageName] = type }

    public func adding(_ more: [any Message.Type]) -> TypeRegistry {
        var copy = self
        for type in more { copy.register(type) }
        return copy
    }

    /// The type for a full name or a type URL (`type.googleapis.com/pkg.Msg`).
    public func type(named name: String) -> (any Message.Type)? {
        let fullName = name.split(separator: "/").last.map(String.init) ?? name
        return types[fullName]
    }

    /// The well-known types of google/protobuf.
    public static let wellKnownTypes = TypeRegistry(files: ProtobufKit.wellKnownFiles)
}
