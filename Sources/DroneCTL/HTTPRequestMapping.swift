import DynamicProtobuf
import ProtobufKit

/// A request message as the HTTP request its method's `google.api.http` rule describes: the
/// path with its variables filled from fields, the body (`*` or one field), and the remaining
/// fields as query parameters. The gateway reverses exactly this (docs/gateway.md).
struct HTTPRequestMapping: Equatable {
    var method: String
    /// Path and query, percent-encoded.
    var target: String
    var body: [UInt8]?

    /// Maps `request` (canonical JSON of a `type` message) by `rule`.
    init(rule: HTTPRule, request: JSONValue, type: String, pool: DescriptorPool, flagName: (String) -> String) throws {
        guard case .object(var remaining) = request else { throw UsageError("the request is not a JSON object") }
        method = rule.method
        let template = try PathTemplateText(rule.pattern)
        var path = ""
        for segment in template.segments {
            switch segment {
            case .literal(let text):
                path += "/" + Self.percentEncode(text, keepSlash: false)
            case .variable(let fieldPath, let multiSegment):
                let protoPath = fieldPath.split(separator: ".").map(String.init)
                let jsonPath = try pool.jsonPath(protoPath, from: type)
                guard let value = Self.take(jsonPath[...], from: &remaining), let text = Self.text(value), !text.isEmpty else {
                    throw UsageError("\(flagName(fieldPath)) is required over HTTP: it is part of the path \(rule.pattern)")
                }
                path += "/" + Self.percentEncode(text, keepSlash: multiSegment)
            }
        }
        if let verb = template.verb { path += ":" + verb }
        var query: [(String, String)] = []
        switch rule.body {
        case "*":
            body = Self.bytes(.object(remaining))
            remaining = []
        case "":
            body = nil
        default:
            let jsonPath = try pool.jsonPath(rule.body.split(separator: ".").map(String.init), from: type)
            body = Self.bytes(Self.take(jsonPath[...], from: &remaining) ?? .object([]))
        }
        for member in remaining { try Self.flatten(member.value, name: member.key, into: &query) }
        target = path.isEmpty ? "/" : path
        if !query.isEmpty {
            target += "?" + query.map { Self.percentEncode($0.0, keepSlash: false) + "=" + Self.percentEncode($0.1, keepSlash: false) }.joined(separator: "&")
        }
    }

    /// Removes and returns the member at `path`.
    static func take(_ path: ArraySlice<String>, from members: inout [JSONMember]) -> JSONValue? {
        guard let key = path.first, let index = members.firstIndex(where: { $0.key == key }) else { return nil }
        if path.count == 1 { return members.remove(at: index).value }
        guard case .object(var inner) = members[index].value else { return nil }
        let value = take(path.dropFirst(), from: &inner)
        members[index].value = .object(inner)
        if inner.isEmpty { members.remove(at: index) }
        return value
    }

    static func text(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): return text
        case .integer(let number): return String(number)
        case .number: return JSONText.compact(value)
        case .bool(let flag): return flag ? "true" : "false"
        default: return nil
        }
    }

    /// Query parameters for a field: nested messages as `a.b=`, lists as repeated parameters.
    static func flatten(_ value: JSONValue, name: String, into query: inout [(String, String)]) throws {
        switch value {
        case .object(let members):
            for member in members { try flatten(member.value, name: name + "." + member.key, into: &query) }
        case .array(let elements):
            for element in elements {
                guard let text = text(element) else { throw UsageError("field \(name) cannot be sent as a query parameter (a list of messages); this route takes no body for it") }
                query.append((name, text))
            }
        case .null:
            break
        default:
            query.append((name, text(value) ?? ""))
        }
    }

    static func bytes(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.value(value)
        return writer.bytes
    }

    /// RFC 3986 unreserved characters stay; everything else is %XX (a `/` too, unless the
    /// variable spans segments).
    static func percentEncode(_ text: String, keepSlash: Bool) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                result += "/"
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                result += "%"
                result.unicodeScalars.append(hex[Int(byte >> 4)])
                result.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return result
    }
}

/// The parts of a google.api.http path template that matter to a client: literal segments,
/// variables (`{delivery_id}`, `{name=accounts/*}`), and the `:verb`.
struct PathTemplateText {
    enum Segment: Equatable {
        case literal(String)
        /// A field path; `multiSegment` when its pattern spans segments (`**`, or several).
        case variable(String, multiSegment: Bool)
    }
    var segments: [Segment] = []
    var verb: String?

    init(_ pattern: String) throws {
        guard pattern.hasPrefix("/") else { throw UsageError("the HTTP rule's path \(pattern) does not start with /") }
        var rest = Substring(pattern.dropFirst())
        // The verb follows the last ':' outside braces.
        var depth = 0
        var verbStart: Substring.Index?
        for index in rest.indices {
            switch rest[index] {
            case "{": depth += 1
            case "}": depth -= 1
            case ":" where depth == 0: verbStart = index
            default: break
            }
        }
        if let verbStart {
            verb = String(rest[rest.index(after: verbStart)...])
            rest = rest[..<verbStart]
        }
        while !rest.isEmpty {
            if rest.hasPrefix("{") {
                guard let close = rest.firstIndex(of: "}") else { throw UsageError("the HTTP rule's path \(pattern) has an unclosed {") }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                let parts = inside.split(separator: "=", maxSplits: 1)
                let field = String(parts[0])
                let sub = parts.count > 1 ? String(parts[1]) : "*"
                segments.append(.variable(field, multiSegment: sub.contains("**") || sub.contains("/")))
                rest = rest[rest.index(after: close)...]
            } else {
                let end = rest.firstIndex(of: "/") ?? rest.endIndex
                segments.append(.literal(String(rest[..<end])))
                rest = rest[end...]
            }
            if rest.hasPrefix("/") { rest = rest.dropFirst() }
        }
    }
}
