import ProtobufKit

/// A request the gateway could not turn into an RPC, with the HTTP status and the reason.
public struct TranscodingError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public var description: String { message }
    init(_ status: Int = 400, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// Turns HTTP requests into request messages and response messages into JSON, by the
/// `google.api.http` rules and the canonical proto3 JSON mapping (grpc-gateway's conventions):
/// path variables and query parameters fill the fields the body does not, typed by the schema.
public struct Transcoder: Sendable {
    public let schema: Schema

    public init(schema: Schema) { self.schema = schema }

    /// The request message as JSON: the body (whole or under its field), then the path variables,
    /// then the query parameters for the remaining fields.
    public func requestJSON(route: Route, variables: [String: String], query: [(String, String)], body: [UInt8]) throws -> JSONValue {
        guard let message = schema.messages[route.method.inputType] else { throw TranscodingError(500, "no schema for \(route.method.inputType)") }
        var root = JSONValue.object([])
        let trimmedBody = body.drop { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        switch route.body {
        case "":
            if !trimmedBody.isEmpty { throw TranscodingError(400, "\(route.httpMethod) \(route.template) takes no request body") }
        case "*":
            if !trimmedBody.isEmpty {
                let parsed = try parse(body)
                guard case .object = parsed else { throw TranscodingError(400, "the request body must be a JSON object") }
                root = parsed
            }
        default:
            if !trimmedBody.isEmpty {
                let field = try resolve(route.body.split(separator: ".").map(String.init), in: message, for: "body")
                try setMember(&root, path: field.jsonPath, value: try parse(body), append: false)
            }
        }
        for (path, value) in variables.sorted(by: { $0.key < $1.key }) {
            let field = try resolve(path.split(separator: ".").map(String.init), in: message, for: "path variable {\(path)}")
            try setMember(&root, path: field.jsonPath, value: try typed(value, field.field, name: path), append: false)
        }
        if route.body != "*" {
            let bodyField = route.body
            for (name, value) in query {
                let path = name.split(separator: ".").map(String.init)
                if !bodyField.isEmpty, path.first == bodyField { throw TranscodingError(400, "query parameter \(name) is part of the request body") }
                if variables[name] != nil { throw TranscodingError(400, "query parameter \(name) is already bound by the path") }
                let field = try resolve(path, in: message, for: "query parameter \(name)")
                if field.field.kind == .message, !Schema.stringLikeMessages.contains(field.field.typeName), Schema.wrapperKinds[field.field.typeName] == nil {
                    throw TranscodingError(400, "query parameter \(name) is a message; set its fields (\(name).<field>)")
                }
                try setMember(&root, path: field.jsonPath, value: try typed(value, field.field, name: name), append: field.field.isRepeated)
            }
        } else if let first = query.first {
            throw TranscodingError(400, "query parameter \(first.0): this route takes every field from the body")
        }
        return root
    }

    /// Decodes the request message from the JSON tree; decoding errors name the field.
    public func decode<Input: JSONMessage>(_ type: Input.Type, _ json: JSONValue) throws -> Input {
        var writer = JSONWriter()
        writer.value(json)
        do {
            return try Input(jsonUTF8Bytes: writer.bytes)
        } catch {
            throw TranscodingError(400, "\(error)")
        }
    }

    /// The same for a type known only at run time.
    public func decode(_ type: any JSONMessage.Type, _ json: JSONValue) throws -> any JSONMessage {
        var writer = JSONWriter()
        writer.value(json)
        do {
            return try type.init(jsonUTF8Bytes: writer.bytes)
        } catch {
            throw TranscodingError(400, "\(error)")
        }
    }

    /// The JSON text of one top-level member of `json` (compact JSON as the mapping writes it),
    /// found by the field's name, without building a tree; `{}` when the member is absent
    /// (proto3 JSON leaves out fields at their default value).
    public func member(_ field: String, of json: [UInt8], type: String) -> [UInt8] {
        member(key: memberKey(field, type: type), of: json)
    }

    /// The bytes `"jsonName":` that `member` looks for (worked out once per route by the gateway).
    public func memberKey(_ field: String, type: String) -> [UInt8] {
        let jsonName = schema.messages[type]?.field(named: field)?.jsonName ?? field
        return Array("\"\(jsonName)\":".utf8)
    }

    /// `member`, with the key's bytes already made.
    public func member(key: [UInt8], of json: [UInt8]) -> [UInt8] {
        var depth = 0
        var index = 0
        var inString = false
        var keyStart: Int?
        while index < json.count {
            let byte = json[index]
            if inString {
                if byte == UInt8(ascii: "\\") { index += 2; continue }
                if byte == UInt8(ascii: "\"") { inString = false }
                index += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                if depth == 1, keyStart == nil, json[index...].starts(with: key) {
                    keyStart = index + key.count
                    index += key.count
                    continue
                }
                inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if depth == 1, let start = keyStart { return Array(json[start..<index]) }
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1, let start = keyStart { return Array(json[start..<index]) }
            default:
                break
            }
            index += 1
        }
        return Array("{}".utf8)
    }

    /// The response body: the response message's JSON (`whole`), or its `response_body` field.
    public func responseBody(_ whole: [UInt8], route: Route) -> [UInt8] {
        route.responseBody.isEmpty ? whole : member(route.responseBody, of: whole, type: route.method.outputType)
    }

    // MARK: Fields

    struct ResolvedField {
        var field: Schema.Field
        var jsonPath: [String]
    }

    /// Follows a field path (proto or JSON names) through the schema.
    func resolve(_ path: [String], in message: Schema.MessageType, for what: String) throws -> ResolvedField {
        var current = message
        var jsonPath: [String] = []
        for (index, name) in path.enumerated() {
            guard let field = current.field(named: name) else {
                throw TranscodingError(400, "\(what): \(current.fullName) has no field \"\(name)\"")
            }
            jsonPath.append(field.jsonName)
            if index == path.count - 1 { return ResolvedField(field: field, jsonPath: jsonPath) }
            guard field.kind == .message, !field.isRepeated, let next = schema.messages[field.typeName] else {
                throw TranscodingError(400, "\(what): \(field.name) is not a message field")
            }
            current = next
        }
        throw TranscodingError(400, "\(what): empty field path")
    }

    /// A path or query string as the JSON value its field expects.
    func typed(_ text: String, _ field: Schema.Field, name: String) throws -> JSONValue {
        func scalar(_ kind: Schema.Kind) throws -> JSONValue {
            switch kind {
            case .bool:
                switch text {
                case "true": return .bool(true)
                case "false": return .bool(false)
                default: throw TranscodingError(400, "\(name) must be true or false, got \"\(text)\"")
                }
            case .double, .float:
                if let number = Double(text) { return .number(number) }
                if ["NaN", "Infinity", "-Infinity"].contains(text) { return .string(text) }
                throw TranscodingError(400, "\(name) must be a number, got \"\(text)\"")
            case .int32, .sint32, .sfixed32, .uint32, .fixed32, .int64, .sint64, .sfixed64, .uint64, .fixed64:
                // Integers travel as strings; the JSON mapping checks the range.
                return .string(text)
            case .enum:
                if let number = Int64(text) { return .integer(number) }
                let values = schema.enums[field.typeName]?.map(\.name) ?? []
                guard values.contains(text) else {
                    throw TranscodingError(400, "\(name) must be one of \(values.joined(separator: ", ")), got \"\(text)\"")
                }
                return .string(text)
            default:
                return .string(text)
            }
        }
        if field.kind == .message {
            if Schema.stringLikeMessages.contains(field.typeName) { return .string(text) }
            if let kind = Schema.wrapperKinds[field.typeName] { return try scalar(kind) }
            throw TranscodingError(400, "\(name) is a message and cannot be set from a string")
        }
        return try scalar(field.kind)
    }

    func parse(_ body: [UInt8]) throws -> JSONValue {
        do { return try JSONParser.parse(body) } catch { throw TranscodingError(400, "the request body is not valid JSON: \(error)") }
    }

}

/// The HTTP status for a gRPC status code (the table grpc-gateway and Envoy use).
public func httpStatus(for code: Int) -> Int {
    switch code {
    case 0: 200
    case 1: 499
    case 2: 500
    case 3: 400
    case 4: 504
    case 5: 404
    case 6: 409
    case 7: 403
    case 8: 429
    case 9: 400
    case 10: 409
    case 11: 400
    case 12: 501
    case 13: 500
    case 14: 503
    case 15: 500
    case 16: 401
    default: 500
    }
}

// MARK: JSON object trees (request messages being built)

/// The member of `members` named `key`, a JSON name, or its proto (snake_case) name: a client
/// may write either in a body, and a path variable must replace what the body said.
func memberIndex(_ members: [JSONMember], _ key: String) -> Int? {
    members.firstIndex { $0.key == key } ?? members.firstIndex { $0.key == snakeCase(key) }
}

/// Sets (or, with `append`, appends to) the value at `path` in an object tree, creating objects
/// on the way.
func setMember(_ root: inout JSONValue, path: [String], value: JSONValue, append: Bool) throws {
    guard case .object(var members) = root else { throw TranscodingError(400, "\(path.joined(separator: ".")): expected an object") }
    let key = path[0]
    let index = memberIndex(members, key)
    if path.count == 1 {
        if append {
            if let index, case .array(var items) = members[index].value {
                items.append(value)
                members[index].value = .array(items)
            } else if let index {
                members[index].value = .array([members[index].value, value])
            } else {
                members.append(JSONMember(key, .array([value])))
            }
        } else if let index {
            members[index].value = value
        } else {
            members.append(JSONMember(key, value))
        }
    } else {
        var child = index.map { members[$0].value } ?? .object([])
        try setMember(&child, path: Array(path.dropFirst()), value: value, append: append)
        if let index { members[index].value = child } else { members.append(JSONMember(key, child)) }
    }
    root = .object(members)
}

/// The string at `path` in an object tree, if there is one.
func stringMember(_ json: JSONValue, _ path: [String]) -> String? {
    var current = json
    for key in path {
        guard case .object(let members) = current, let index = memberIndex(members, key) else { return nil }
        current = members[index].value
    }
    if case .string(let text) = current { return text }
    return nil
}

/// `ownerId` -> `owner_id`: the proto name of a field from its default JSON name.
func snakeCase(_ camel: String) -> String {
    var out = ""
    for character in camel {
        if character.isUppercase { out += "_" + character.lowercased() } else { out.append(character) }
    }
    return out
}
