// Reads protoc's CodeGeneratorRequest (and FileDescriptorSet) through protobuf-c, using the C code
// that protoc-c generated from descriptor.proto, plugin.proto and google/api/http.proto, and writes
// the CodeGeneratorResponse the same way.

#if canImport(Glibc)
import Glibc
#endif
internal import CProtobufC
internal import CWellKnownProtos

/// What protoc asked the plugin to do.
public struct CodeGeneratorRequest: Sendable {
    /// The files to generate code for (their names), in protoc's order.
    public var filesToGenerate: [String]
    /// The `--swiftpbc_opt` / `--swiftpbc_out=PARAMS:` parameter string.
    public var parameter: String
    /// Every file in the request, dependencies first.
    public var files: [ProtoFile]

    public init(filesToGenerate: [String], parameter: String, files: [ProtoFile]) {
        self.filesToGenerate = filesToGenerate
        self.parameter = parameter
        self.files = files
    }
}

/// A failure to read the descriptors protoc sent.
public struct DescriptorDecodingError: Error, CustomStringConvertible {
    public var description: String
}

/// The extension number of `google.api.http` on MethodOptions (google/api/annotations.proto).
/// protobuf-c has no extension support, so the option arrives as an unknown field.
let httpRuleExtensionNumber: UInt32 = 72_295_728

/// The extension number of `buf.validate.field`, `buf.validate.message` and `buf.validate.oneof`
/// (on FieldOptions, MessageOptions and OneofOptions: buf/validate/validate.proto, which PyPI's
/// protovalidate ships and `make proto` hands protoc with --descriptor_set_in).
let validateExtensionNumber: UInt32 = 1159

/// The file that declares the field-rule annotations. It is not part of any generated module:
/// the descriptors embedded for reflection leave the import out (the options stay, as unknown
/// fields of their options messages), so a reflection client needs nothing more.
public let validateProtoFile = "buf/validate/validate.proto"

extension CodeGeneratorRequest {
    /// Decodes a serialized `google.protobuf.compiler.CodeGeneratorRequest`.
    public init(serialized bytes: [UInt8]) throws {
        let decoded = bytes.withUnsafeBufferPointer { buffer in
            google__protobuf__compiler__code_generator_request__unpack(nil, buffer.count, buffer.baseAddress)
        }
        guard let request = decoded else {
            throw DescriptorDecodingError(description: "protoc sent a CodeGeneratorRequest that protobuf-c cannot decode (\(bytes.count) bytes)")
        }
        defer { google__protobuf__compiler__code_generator_request__free_unpacked(request, nil) }
        let req = request.pointee
        self.filesToGenerate = (0..<req.n_file_to_generate).map { cString(req.file_to_generate[$0]) }
        self.parameter = cString(req.parameter)
        self.files = try (0..<req.n_proto_file).map { try ProtoFile(reading: req.proto_file[$0]!) }
    }

    /// Decodes a serialized `google.protobuf.FileDescriptorSet` (protoc `--descriptor_set_out`,
    /// with `--include_imports --include_source_info`) as if protoc had asked for its last file.
    public init(descriptorSet bytes: [UInt8], parameter: String = "") throws {
        let decoded = bytes.withUnsafeBufferPointer { buffer in
            google__protobuf__file_descriptor_set__unpack(nil, buffer.count, buffer.baseAddress)
        }
        guard let set = decoded else {
            throw DescriptorDecodingError(description: "not a FileDescriptorSet (\(bytes.count) bytes)")
        }
        defer { google__protobuf__file_descriptor_set__free_unpacked(set, nil) }
        self.files = try (0..<set.pointee.n_file).map { try ProtoFile(reading: set.pointee.file[$0]!) }
        self.filesToGenerate = files.last.map { [$0.name] } ?? []
        self.parameter = parameter
    }
}

/// One file of a plugin's answer.
public struct GeneratedFile: Sendable, Hashable {
    public var name: String
    public var content: String
    public init(name: String, content: String) {
        self.name = name
        self.content = content
    }
}

/// Encodes a `google.protobuf.compiler.CodeGeneratorResponse` carrying either files or an error.
public func serializeCodeGeneratorResponse(files: [GeneratedFile], error: String?) -> [UInt8] {
    var response = Google__Protobuf__Compiler__CodeGeneratorResponse()
    google__protobuf__compiler__code_generator_response__init(&response)
    // Strings must stay alive while protobuf-c packs them: keep C copies until the end.
    var owned: [UnsafeMutablePointer<CChar>] = []
    defer { owned.forEach { free($0) } }
    func dup(_ s: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(s)!
        owned.append(copy)
        return copy
    }
    if let error { response.error = dup(error) }
    let entries = UnsafeMutablePointer<Google__Protobuf__Compiler__CodeGeneratorResponse__File>.allocate(capacity: max(files.count, 1))
    let pointers = UnsafeMutablePointer<UnsafeMutablePointer<Google__Protobuf__Compiler__CodeGeneratorResponse__File>?>.allocate(capacity: max(files.count, 1))
    defer {
        entries.deallocate()
        pointers.deallocate()
    }
    for (index, file) in files.enumerated() {
        let entry = entries + index
        entry.initialize(to: .init())
        google__protobuf__compiler__code_generator_response__file__init(entry)
        entry.pointee.name = dup(file.name)
        entry.pointee.content = dup(file.content)
        pointers[index] = entry
    }
    response.n_file = files.count
    response.file = pointers
    let size = google__protobuf__compiler__code_generator_response__get_packed_size(&response)
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = google__protobuf__compiler__code_generator_response__pack(&response, buffer.baseAddress)
    }
}

// MARK: - Reading descriptor structs

private func cString(_ pointer: UnsafePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

private func cString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    cString(UnsafePointer(pointer))
}

/// Comments from SourceCodeInfo, keyed by location path.
struct CommentIndex {
    var byPath: [[Int32]: String] = [:]

    init(_ info: UnsafeMutablePointer<Google__Protobuf__SourceCodeInfo>?) {
        guard let info else { return }
        for index in 0..<info.pointee.n_location {
            let location = info.pointee.location[index]!.pointee
            let path = Array(UnsafeBufferPointer(start: location.path, count: location.n_path))
            let leading = cString(location.leading_comments)
            let trailing = cString(location.trailing_comments)
            let text = leading.isEmpty ? trailing : leading
            if !text.isEmpty { byPath[path] = text }
        }
    }

    subscript(path: [Int32]) -> String { byPath[path] ?? "" }
}

// Field numbers inside descriptor.proto, used to build SourceCodeInfo paths.
private enum DescriptorPath {
    static let fileMessage: Int32 = 4, fileEnum: Int32 = 5, fileService: Int32 = 6, filePackage: Int32 = 2
    static let messageField: Int32 = 2, messageNested: Int32 = 3, messageEnum: Int32 = 4, messageOneof: Int32 = 8
    static let enumValue: Int32 = 2
    static let serviceMethod: Int32 = 2
}

extension ProtoFile {
    init(reading pointer: UnsafeMutablePointer<Google__Protobuf__FileDescriptorProto>) throws {
        let file = pointer.pointee
        let comments = CommentIndex(file.source_code_info)
        let package = cString(file.package)
        let prefix = package.isEmpty ? "" : package + "."
        let syntax = cString(file.syntax)
        let name = cString(file.name)
        let messages = (0..<file.n_message_type).map {
            ProtoMessage(reading: file.message_type[$0]!, prefix: prefix, path: [DescriptorPath.fileMessage, Int32($0)], comments: comments)
        }
        let enums = (0..<file.n_enum_type).map {
            ProtoEnum(reading: file.enum_type[$0]!, prefix: prefix, path: [DescriptorPath.fileEnum, Int32($0)], comments: comments)
        }
        let services = try (0..<file.n_service).map {
            try ProtoService(reading: file.service[$0]!, prefix: prefix, path: [DescriptorPath.fileService, Int32($0)], comments: comments)
        }
        // Re-encode the descriptor without SourceCodeInfo: reflection clients need the shape,
        // not the comments, and the embedded copy stays small. The import of validate.proto is
        // left out too (see `validateProtoFile`); our files import it without `public`.
        let dependencies = (0..<file.n_dependency).map { cString(file.dependency[$0]) }
        let savedInfo = pointer.pointee.source_code_info
        let savedDependencies = pointer.pointee.dependency
        let savedDependencyCount = pointer.pointee.n_dependency
        let kept = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: max(1, Int(savedDependencyCount)))
        defer { kept.deallocate() }
        var keptCount = 0
        for index in 0..<Int(savedDependencyCount) where dependencies[index] != validateProtoFile {
            kept[keptCount] = savedDependencies![index]
            keptCount += 1
        }
        pointer.pointee.source_code_info = nil
        pointer.pointee.dependency = kept
        pointer.pointee.n_dependency = keptCount
        let size = google__protobuf__file_descriptor_proto__get_packed_size(pointer)
        let serialized = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = google__protobuf__file_descriptor_proto__pack(pointer, buffer.baseAddress)
        }
        pointer.pointee.source_code_info = savedInfo
        pointer.pointee.dependency = savedDependencies
        pointer.pointee.n_dependency = savedDependencyCount
        self.init(
            name: name,
            package: package,
            syntax: syntax.isEmpty ? "proto2" : syntax,
            dependencies: dependencies.filter { $0 != validateProtoFile },
            messages: messages,
            enums: enums,
            services: services,
            serializedDescriptor: serialized,
            packageComment: comments[[DescriptorPath.filePackage]]
        )
    }
}

extension ProtoMessage {
    init(reading pointer: UnsafeMutablePointer<Google__Protobuf__DescriptorProto>, prefix: String, path: [Int32], comments: CommentIndex) {
        let message = pointer.pointee
        let name = cString(message.name)
        let fullName = prefix + name
        let fields = (0..<message.n_field).map { index -> ProtoField in
            let field = message.field[index]!.pointee
            let typeName = cString(field.type_name)
            return ProtoField(
                name: cString(field.name),
                number: field.number,
                type: ProtoFieldType(rawValue: Int32(truncatingIfNeeded: field.type.rawValue)) ?? .message,
                typeName: typeName.hasPrefix(".") ? String(typeName.dropFirst()) : typeName,
                isRepeated: field.label.rawValue == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED.rawValue,
                jsonName: cString(field.json_name),
                oneofIndex: field.has_oneof_index != 0 ? Int(field.oneof_index) : nil,
                comment: comments[path + [DescriptorPath.messageField, Int32(index)]],
                validationRules: field.options.flatMap { extensionPayload(validateExtensionNumber, of: $0.pointee.base) }
            )
        }
        let oneofs = (0..<message.n_oneof_decl).map {
            ProtoOneof(name: cString(message.oneof_decl[$0]!.pointee.name),
                       comment: comments[path + [DescriptorPath.messageOneof, Int32($0)]],
                       validationRules: message.oneof_decl[$0]!.pointee.options.flatMap { extensionPayload(validateExtensionNumber, of: $0.pointee.base) })
        }
        let nested = (0..<message.n_nested_type).map {
            ProtoMessage(reading: message.nested_type[$0]!, prefix: fullName + ".",
                         path: path + [DescriptorPath.messageNested, Int32($0)], comments: comments)
        }
        let nestedEnums = (0..<message.n_enum_type).map {
            ProtoEnum(reading: message.enum_type[$0]!, prefix: fullName + ".",
                      path: path + [DescriptorPath.messageEnum, Int32($0)], comments: comments)
        }
        let isMapEntry = message.options.map { $0.pointee.has_map_entry != 0 && $0.pointee.map_entry != 0 } ?? false
        self.init(name: name, fullName: fullName, fields: fields, oneofs: oneofs, nestedMessages: nested,
                  nestedEnums: nestedEnums, isMapEntry: isMapEntry, comment: comments[path],
                  validationRules: message.options.flatMap { extensionPayload(validateExtensionNumber, of: $0.pointee.base) })
    }
}

extension ProtoEnum {
    init(reading pointer: UnsafeMutablePointer<Google__Protobuf__EnumDescriptorProto>, prefix: String, path: [Int32], comments: CommentIndex) {
        let value = pointer.pointee
        let name = cString(value.name)
        let values = (0..<value.n_value).map {
            ProtoEnumValue(name: cString(value.value[$0]!.pointee.name), number: value.value[$0]!.pointee.number,
                           comment: comments[path + [DescriptorPath.enumValue, Int32($0)]])
        }
        self.init(name: name, fullName: prefix + name, values: values, comment: comments[path])
    }
}

extension ProtoService {
    init(reading pointer: UnsafeMutablePointer<Google__Protobuf__ServiceDescriptorProto>, prefix: String, path: [Int32], comments: CommentIndex) throws {
        let service = pointer.pointee
        let name = cString(service.name)
        let methods = try (0..<service.n_method).map { index -> ProtoMethod in
            let method = service.method[index]!.pointee
            var rule: HTTPRuleModel?
            var idempotent = false
            if let options = method.options {
                rule = try httpRule(fromUnknownFieldsOf: options)
                if options.pointee.has_idempotency_level != 0 {
                    // NO_SIDE_EFFECTS (1) and IDEMPOTENT (2) are both safe to retry.
                    idempotent = options.pointee.idempotency_level.rawValue != 0
                }
            }
            let input = cString(method.input_type)
            let output = cString(method.output_type)
            return ProtoMethod(
                name: cString(method.name),
                inputType: input.hasPrefix(".") ? String(input.dropFirst()) : input,
                outputType: output.hasPrefix(".") ? String(output.dropFirst()) : output,
                clientStreaming: method.has_client_streaming != 0 && method.client_streaming != 0,
                serverStreaming: method.has_server_streaming != 0 && method.server_streaming != 0,
                httpRule: rule,
                isIdempotent: idempotent,
                comment: comments[path + [DescriptorPath.serviceMethod, Int32(index)]]
            )
        }
        self.init(name: name, fullName: prefix + name, methods: methods, comment: comments[path])
    }
}

/// The payload of a message-typed extension among an options message's unknown fields: the
/// bytes of every occurrence, concatenated (protobuf merges repeated occurrences of a message
/// field that way). Nil when the extension is absent.
private func extensionPayload(_ number: UInt32, of base: ProtobufCMessage) -> [UInt8]? {
    var payload: [UInt8]?
    for index in 0..<Int(base.n_unknown_fields) {
        let field = base.unknown_fields[index]
        guard field.tag == number, field.wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED else { continue }
        // As for google.api.http: the length varint, then the message bytes.
        var prefix = 0
        while prefix < field.len, field.data[prefix] & 0x80 != 0 { prefix += 1 }
        prefix += 1
        guard prefix <= field.len else { continue }
        payload = (payload ?? []) + Array(UnsafeBufferPointer(start: field.data + prefix, count: field.len - prefix))
    }
    return payload
}

/// Finds `google.api.http` among a MethodOptions' unknown fields and decodes it as an HttpRule.
private func httpRule(fromUnknownFieldsOf options: UnsafeMutablePointer<Google__Protobuf__MethodOptions>) throws -> HTTPRuleModel? {
    let base = options.pointee.base
    for index in 0..<Int(base.n_unknown_fields) {
        let field = base.unknown_fields[index]
        guard field.tag == httpRuleExtensionNumber else { continue }
        // protobuf-c keeps a length-delimited unknown field as it was on the wire after the tag:
        // the length varint, then the HttpRule bytes.
        var prefix = 0
        while prefix < field.len, field.data[prefix] & 0x80 != 0 { prefix += 1 }
        prefix += 1
        guard field.wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, prefix <= field.len,
              let decoded = google__api__http_rule__unpack(nil, field.len - prefix, field.data + prefix) else {
            throw DescriptorDecodingError(description: "the google.api.http option (field \(httpRuleExtensionNumber) of MethodOptions) is not a valid HttpRule")
        }
        defer { google__api__http_rule__free_unpacked(decoded, nil) }
        return HTTPRuleModel(reading: decoded)
    }
    return nil
}

extension HTTPRuleModel {
    init(reading pointer: UnsafeMutablePointer<Google__Api__HttpRule>) {
        let rule = pointer.pointee
        var method = ""
        var pattern = ""
        // Oneof case values are the field numbers of google.api.HttpRule.
        switch rule.pattern_case.rawValue {
        case 2: method = "GET"; pattern = cString(rule.get)
        case 3: method = "PUT"; pattern = cString(rule.put)
        case 4: method = "POST"; pattern = cString(rule.post)
        case 5: method = "DELETE"; pattern = cString(rule.delete_)
        case 6: method = "PATCH"; pattern = cString(rule.patch)
        case 8:
            if let custom = rule.custom {
                method = cString(custom.pointee.kind)
                pattern = cString(custom.pointee.path)
            }
        default: break
        }
        let bindings = (0..<rule.n_additional_bindings).map { HTTPRuleModel(reading: rule.additional_bindings[$0]!) }
        self.init(method: method, pattern: pattern, body: cString(rule.body),
                  responseBody: cString(rule.response_body), additionalBindings: bindings)
    }
}
