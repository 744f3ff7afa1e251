internal import CProtobufC
internal import CWellKnownProtos
import ProtobufKit

/// The shape of every message and enum the gateway can see, read from the FileDescriptorProtos
/// that generated code embeds. The gateway needs it to type path and query values (a `bool`
/// field gets `true`, not `"true"`) and to write the OpenAPI document.
public struct Schema: Sendable {
    public enum Kind: Int32, Sendable {
        case double = 1, float, int64, uint64, int32, fixed64, fixed32, bool, string, group, message, bytes, uint32, `enum`, sfixed32, sfixed64, sint32, sint64
    }

    public struct Field: Sendable {
        public var name: String
        public var jsonName: String
        public var number: Int32
        public var kind: Kind
        public var isRepeated: Bool
        /// Full name of the message or enum type (no leading dot), for message and enum fields.
        public var typeName: String
        public var oneofIndex: Int32?
        /// The field's `buf.validate.field` rules, when it has any.
        public var rules: FieldRules? = nil
    }

    public struct MessageType: Sendable {
        public var fullName: String
        public var fields: [Field]
        public var isMapEntry: Bool
        /// The oneofs by index: their names, and whether `buf.validate.oneof` requires one set.
        public var oneofs: [(name: String, required: Bool)] = []
        /// `buf.validate.message` oneof rules (fields by proto name).
        public var oneofRules: [MessageOneofRule] = []
        /// The field with this proto name or JSON name.
        public func field(named name: String) -> Field? { fields.first { $0.name == name || $0.jsonName == name } }
    }

    public private(set) var messages: [String: MessageType] = [:]
    /// Enum full name to its value names, in declaration order.
    public private(set) var enums: [String: [(name: String, number: Int32)]] = [:]

    public init(files: [ProtoFileMetadata]) {
        for file in files { add(file) }
    }

    private mutating func add(_ file: ProtoFileMetadata) {
        let bytes = file.serializedDescriptor
        guard let descriptor = bytes.withUnsafeBufferPointer({ google__protobuf__file_descriptor_proto__unpack(nil, $0.count, $0.baseAddress) }) else { return }
        defer { google__protobuf__file_descriptor_proto__free_unpacked(descriptor, nil) }
        let package = descriptor.pointee.package.map { String(cString: $0) } ?? ""
        let prefix = package.isEmpty ? "" : package + "."
        for index in 0..<descriptor.pointee.n_message_type { addMessage(descriptor.pointee.message_type[index]!, prefix: prefix) }
        for index in 0..<descriptor.pointee.n_enum_type { addEnum(descriptor.pointee.enum_type[index]!, prefix: prefix) }
    }

    private mutating func addMessage(_ message: UnsafeMutablePointer<Google__Protobuf__DescriptorProto>, prefix: String) {
        let name = prefix + String(cString: message.pointee.name)
        var fields: [Field] = []
        for index in 0..<message.pointee.n_field {
            let field = message.pointee.field[index]!.pointee
            let fieldName = String(cString: field.name)
            let typeName = field.type_name.map { String(String(cString: $0).drop { $0 == "." }) } ?? ""
            fields.append(Field(name: fieldName, jsonName: field.json_name.map { String(cString: $0) } ?? fieldName, number: field.number,
                                kind: Kind(rawValue: Int32(field.type.rawValue)) ?? .string,
                                isRepeated: field.label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED,
                                typeName: typeName, oneofIndex: field.has_oneof_index != 0 ? field.oneof_index : nil,
                                rules: field.options.flatMap { FieldRules.payload(of: $0.pointee.base) }.map { FieldRules(reading: $0) }))
        }
        let isMapEntry = message.pointee.options.map { $0.pointee.map_entry != 0 } ?? false
        var type = MessageType(fullName: name, fields: fields, isMapEntry: isMapEntry)
        type.oneofs = (0..<message.pointee.n_oneof_decl).map { index in
            let oneof = message.pointee.oneof_decl[index]!.pointee
            return (String(cString: oneof.name), oneof.options.flatMap { FieldRules.payload(of: $0.pointee.base) }.map(FieldRules.oneofRequired) ?? false)
        }
        type.oneofRules = message.pointee.options.flatMap { FieldRules.payload(of: $0.pointee.base) }.map(FieldRules.messageOneofRules) ?? []
        messages[name] = type
        for index in 0..<message.pointee.n_nested_type { addMessage(message.pointee.nested_type[index]!, prefix: name + ".") }
        for index in 0..<message.pointee.n_enum_type { addEnum(message.pointee.enum_type[index]!, prefix: name + ".") }
    }

    private mutating func addEnum(_ enumeration: UnsafeMutablePointer<Google__Protobuf__EnumDescriptorProto>, prefix: String) {
        let name = prefix + String(cString: enumeration.pointee.name)
        enums[name] = (0..<enumeration.pointee.n_value).map {
            let value = enumeration.pointee.value[$0]!.pointee
            return (String(cString: value.name), value.number)
        }
    }

    /// Well-known types whose JSON form is a string (Timestamp, Duration, FieldMask) or the
    /// wrapped scalar.
    static let stringLikeMessages: Set<String> = ["google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"]
    static let wrapperKinds: [String: Kind] = [
        "google.protobuf.DoubleValue": .double, "google.protobuf.FloatValue": .float, "google.protobuf.Int64Value": .int64,
        "google.protobuf.UInt64Value": .uint64, "google.protobuf.Int32Value": .int32, "google.protobuf.UInt32Value": .uint32,
        "google.protobuf.BoolValue": .bool, "google.protobuf.StringValue": .string, "google.protobuf.BytesValue": .bytes,
    ]
}
