internal import CProtobufC
internal import CWellKnownProtos
import ProtobufKit

/// The files a server can describe, which file declares each symbol, and which file declares
/// each extension of a message type, built from the serialized FileDescriptorProtos that
/// generated code embeds (read with protobuf-c).
struct DescriptorIndex: Sendable {
    private(set) var files: [String: ProtoFileMetadata] = [:]
    private(set) var fileForSymbol: [String: String] = [:]
    /// Extended message type (fully qualified, no leading dot) -> field number -> declaring file.
    /// For example `google.protobuf.MethodOptions` -> 72295728 -> `google/api/annotations.proto`.
    private(set) var extensionFiles: [String: [Int32: String]] = [:]

    init(files metadata: [ProtoFileMetadata]) {
        for file in metadata { add(file) }
    }

    mutating func add(_ file: ProtoFileMetadata) {
        files[file.name] = file
        let bytes = file.serializedDescriptor
        guard let descriptor = bytes.withUnsafeBufferPointer({ google__protobuf__file_descriptor_proto__unpack(nil, $0.count, $0.baseAddress) }) else { return }
        defer { google__protobuf__file_descriptor_proto__free_unpacked(descriptor, nil) }
        let package = descriptor.pointee.package.map { String(cString: $0) } ?? ""
        let prefix = package.isEmpty ? "" : package + "."
        for index in 0..<descriptor.pointee.n_message_type {
            addMessage(descriptor.pointee.message_type[index]!, prefix: prefix, file: file.name)
        }
        for index in 0..<descriptor.pointee.n_enum_type {
            fileForSymbol[prefix + String(cString: descriptor.pointee.enum_type[index]!.pointee.name)] = file.name
        }
        for index in 0..<descriptor.pointee.n_extension {
            addExtension(descriptor.pointee.extension[index]!, prefix: prefix, file: file.name)
        }
        for index in 0..<descriptor.pointee.n_service {
            let service = descriptor.pointee.service[index]!.pointee
            let name = prefix + String(cString: service.name)
            fileForSymbol[name] = file.name
            for method in 0..<service.n_method {
                fileForSymbol[name + "." + String(cString: service.method[method]!.pointee.name)] = file.name
            }
        }
    }

    private mutating func addMessage(_ message: UnsafeMutablePointer<Google__Protobuf__DescriptorProto>, prefix: String, file: String) {
        let name = prefix + String(cString: message.pointee.name)
        fileForSymbol[name] = file
        for index in 0..<message.pointee.n_nested_type {
            addMessage(message.pointee.nested_type[index]!, prefix: name + ".", file: file)
        }
        for index in 0..<message.pointee.n_enum_type {
            fileForSymbol[name + "." + String(cString: message.pointee.enum_type[index]!.pointee.name)] = file
        }
        for index in 0..<message.pointee.n_extension {
            addExtension(message.pointee.extension[index]!, prefix: name + ".", file: file)
        }
    }

    /// An `extend` field: its full name is a symbol, and it is found by (extended type, number).
    private mutating func addExtension(_ field: UnsafeMutablePointer<Google__Protobuf__FieldDescriptorProto>, prefix: String, file: String) {
        if let name = field.pointee.name { fileForSymbol[prefix + String(cString: name)] = file }
        guard let extendee = field.pointee.extendee, field.pointee.has_number != 0 else { return }
        // protoc writes resolved type names fully qualified with a leading dot; reflection
        // requests name types without it.
        var type = String(cString: extendee)
        if type.hasPrefix(".") { type.removeFirst() }
        extensionFiles[type, default: [:]][field.pointee.number] = file
    }

    /// The extension numbers of `type` declared by known files, ascending.
    func extensionNumbers(of type: String) -> [Int32] {
        (extensionFiles[type] ?? [:]).keys.sorted()
    }

    /// `name` and every file it depends on, transitively, dependencies first.
    func closure(of name: String) -> [ProtoFileMetadata] {
        var seen: Set<String> = []
        var ordered: [ProtoFileMetadata] = []
        func visit(_ name: String) {
            guard seen.insert(name).inserted, let file = files[name] else { return }
            file.dependencies.forEach(visit)
            ordered.append(file)
        }
        visit(name)
        return ordered
    }
}
