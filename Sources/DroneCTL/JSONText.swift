import ProtobufKit

/// JSON trees as text for people: indented JSON (the configuration file) and the `text` output
/// format, an indented `name: value` form.
public enum JSONText {
    /// One scalar (or empty container) as compact JSON.
    static func compact(_ value: JSONValue) -> String {
        var writer = JSONWriter()
        writer.value(value)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// Indented JSON, two spaces a level.
    public static func pretty(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .object(let members) where !members.isEmpty:
            return "{\n" + members.map { inner + compact(.string($0.key)) + ": " + pretty($0.value, indent: inner) }.joined(separator: ",\n")
                + "\n" + indent + "}"
        case .array(let elements) where !elements.isEmpty:
            return "[\n" + elements.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        default:
            return compact(value)
        }
    }

    /// The `text` output format: members as `name: value` lines, nested messages indented,
    /// list elements as `- ` lines. Strings are bare unless they would read as something else.
    public static func readable(_ value: JSONValue) -> String {
        var lines: [String] = []
        render(value, indent: "", into: &lines)
        return lines.joined(separator: "\n")
    }

    static func render(_ value: JSONValue, indent: String, into lines: inout [String]) {
        switch value {
        case .object(let members):
            if members.isEmpty { lines.append(indent + "{}"); return }
            for member in members { renderMember(member.key, member.value, indent: indent, into: &lines) }
        case .array(let elements):
            if elements.isEmpty { lines.append(indent + "[]"); return }
            for element in elements { renderElement(element, indent: indent, into: &lines) }
        default:
            lines.append(indent + scalar(value))
        }
    }

    static func renderMember(_ key: String, _ value: JSONValue, indent: String, into lines: inout [String]) {
        switch value {
        case .object(let members) where !members.isEmpty:
            lines.append(indent + key + ":")
            render(value, indent: indent + "  ", into: &lines)
        case .array(let elements) where !elements.isEmpty:
            lines.append(indent + key + ":")
            for element in elements { renderElement(element, indent: indent + "  ", into: &lines) }
        default:
            lines.append(indent + key + ": " + scalar(value))
        }
    }

    static func renderElement(_ value: JSONValue, indent: String, into lines: inout [String]) {
        switch value {
        case .object(let members) where !members.isEmpty:
            var nested: [String] = []
            render(value, indent: indent + "  ", into: &nested)
            // The first member shares the dash's line.
            nested[0] = indent + "- " + nested[0].dropFirst(indent.count + 2)
            lines += nested
        case .array(let elements) where !elements.isEmpty:
            lines.append(indent + "-")
            for element in elements { renderElement(element, indent: indent + "  ", into: &lines) }
        default:
            lines.append(indent + "- " + scalar(value))
        }
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .string(let text):
            let plain = !text.isEmpty && text.first != " " && text.last != " "
                && !text.contains(where: { $0 == "\n" || $0 == "\"" || $0 == "#" || $0 == ":" || $0 == "\t" })
                && Double(text) == nil && !["true", "false", "null", "-", "{}", "[]"].contains(text)
            return plain ? text : compact(value)
        default:
            return compact(value)
        }
    }
}
