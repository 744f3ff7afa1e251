import DynamicProtobuf
import ProtobufCodeGen

/// Descriptors written back in proto syntax, for `dronectl describe`.
enum ProtoText {
    static func describe(_ symbol: String, in pool: DescriptorPool) -> String? {
        if let found = pool.services[symbol]?.service { return serviceText(found) }
        if let dot = symbol.lastIndex(of: "."), let service = pool.services[String(symbol[..<dot])]?.service,
           let method = service.methods.first(where: { $0.name == symbol[symbol.index(after: dot)...] }) {
            return comment(method.comment, indent: "") + rpc(method) + "\n"
        }
        if let found = pool.messages[symbol] { return messageText(found, pool: pool, indent: "") }
        if let value = pool.enums[symbol] { return enumeration(value, indent: "") }
        return nil
    }

    static func comment(_ text: String, indent: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last?.trimmingWhitespace.isEmpty == true { lines.removeLast() }
        return lines.map { indent + "//" + ($0.isEmpty ? "" : ($0.hasPrefix(" ") ? $0 : " " + $0)) + "\n" }.joined()
    }

    static func serviceText(_ service: ProtoService) -> String {
        var text = comment(service.comment, indent: "") + "service \(service.fullName) {\n"
        for method in service.methods { text += comment(method.comment, indent: "  ") + "  " + rpc(method) + "\n" }
        return text + "}\n"
    }

    static func rpc(_ method: ProtoMethod) -> String {
        var text = "rpc \(method.name)(\(method.clientStreaming ? "stream " : "").\(method.inputType)) returns (\(method.serverStreaming ? "stream " : "").\(method.outputType))"
        if let rule = method.httpRule {
            text += " {\n    option (google.api.http) = { \(rule.method.lowercased()): \"\(rule.pattern)\""
            if !rule.body.isEmpty { text += " body: \"\(rule.body)\"" }
            if !rule.responseBody.isEmpty { text += " response_body: \"\(rule.responseBody)\"" }
            text += " };\n  }"
        } else {
            text += ";"
        }
        return text
    }

    static func typeName(_ field: ProtoField, pool: DescriptorPool) -> String {
        switch field.type {
        case .message:
            if let entry = pool.messages[field.typeName], entry.isMapEntry, entry.fields.count == 2 {
                return "map<\(typeName(entry.fields[0], pool: pool)), \(typeName(entry.fields[1], pool: pool))>"
            }
            return "." + field.typeName
        case .enum: return "." + field.typeName
        default: return String(describing: field.type)
        }
    }

    static func messageText(_ message: ProtoMessage, pool: DescriptorPool, indent: String) -> String {
        var text = comment(message.comment, indent: indent) + indent + "message \(indent.isEmpty ? message.fullName : message.name) {\n"
        let inner = indent + "  "
        var printedOneofs: Set<Int> = []
        for field in message.fields {
            if let oneof = field.oneofIndex, message.oneofs.indices.contains(oneof) {
                let members = message.fields.filter { $0.oneofIndex == oneof }
                let synthetic = members.count == 1 && message.oneofs[oneof].name.hasPrefix("_")
                if !synthetic {
                    guard printedOneofs.insert(oneof).inserted else { continue }
                    text += comment(message.oneofs[oneof].comment, indent: inner) + inner + "oneof \(message.oneofs[oneof].name) {\n"
                    for member in members { text += fieldLine(member, pool: pool, indent: inner + "  ", label: "") }
                    text += inner + "}\n"
                    continue
                }
                text += fieldLine(field, pool: pool, indent: inner, label: "optional ")
                continue
            }
            let isMap = field.type == .message && pool.messages[field.typeName]?.isMapEntry == true
            text += fieldLine(field, pool: pool, indent: inner, label: field.isRepeated && !isMap ? "repeated " : "")
        }
        for nested in message.nestedMessages where !nested.isMapEntry { text += messageText(nested, pool: pool, indent: inner) }
        for value in message.nestedEnums { text += enumeration(value, indent: inner) }
        return text + indent + "}\n"
    }

    static func fieldLine(_ field: ProtoField, pool: DescriptorPool, indent: String, label: String) -> String {
        comment(field.comment, indent: indent) + indent + "\(label)\(typeName(field, pool: pool)) \(field.name) = \(field.number);\n"
    }

    static func enumeration(_ value: ProtoEnum, indent: String) -> String {
        var text = comment(value.comment, indent: indent) + indent + "enum \(indent.isEmpty ? value.fullName : value.name) {\n"
        for entry in value.values { text += comment(entry.comment, indent: indent + "  ") + indent + "  \(entry.name) = \(entry.number);\n" }
        return text + indent + "}\n"
    }
}
