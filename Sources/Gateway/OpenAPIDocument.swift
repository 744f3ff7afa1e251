import Foundation
import ProtobufKit

/// The OpenAPI 3.1 document of the public API, generated from the same routes and schema the
/// gateway serves with, so the two cannot disagree. Served at `GET /openapi.json`.
struct OpenAPIDocument {
    let routes: RouteTable
    let schema: Schema
    private var referenced: Set<String> = []

    init(routes: RouteTable, schema: Schema) {
        self.routes = routes
        self.schema = schema
    }

    func json() -> [UInt8] {
        var document = self
        let value = document.build()
        var writer = JSONWriter()
        writer.value(value)
        return writer.bytes
    }

    private mutating func build() -> JSONValue {
        var paths: [(String, [JSONMember])] = []
        var usedIDs: Set<String> = []
        for route in routes.routes {
            let path = route.template.openAPIPath
            // Service_Method, numbered for a method's additional bindings.
            let base = "\(route.method.service.split(separator: ".").last!)_\(route.method.name)"
            var id = base
            var number = 2
            while !usedIDs.insert(id).inserted { id = "\(base)_\(number)"; number += 1 }
            let operation = self.operation(route, id: id)
            if let index = paths.firstIndex(where: { $0.0 == path }) {
                paths[index].1.append(JSONMember(route.httpMethod.lowercased(), operation))
            } else {
                paths.append((path, [JSONMember(route.httpMethod.lowercased(), operation)]))
            }
        }
        paths.append(("/v1/deliveries/{delivery_id}/summary", [JSONMember("get", summaryOperation())]))
        // Components: every message reachable from an operation, closed over its fields.
        var schemas: [JSONMember] = [JSONMember("google.rpc.Status", statusSchema())]
        var done: Set<String> = []
        var pending = Array(referenced)
        while let name = pending.popLast() {
            guard done.insert(name).inserted, let message = schema.messages[name] else { continue }
            schemas.append(JSONMember(name, messageSchema(message)))
            pending += referenced.subtracting(done)
        }
        schemas.sort { $0.key < $1.key }
        return .object([
            JSONMember("openapi", .string("3.1.0")),
            JSONMember("info", .object([
                JSONMember("title", .string("Fabrikam Drone Delivery API")),
                JSONMember("version", .string("v1")),
                JSONMember("description", .string("Generated from the google.api.http annotations of the .proto files. Errors are google.rpc.Status JSON.")),
            ])),
            JSONMember("servers", .array([.object([JSONMember("url", .string("/"))])])),
            JSONMember("paths", .object(paths.map { JSONMember($0.0, .object($0.1)) })),
            JSONMember("components", .object([
                JSONMember("schemas", .object(schemas)),
                JSONMember("securitySchemes", .object([
                    JSONMember("bearer", .object([JSONMember("type", .string("http")), JSONMember("scheme", .string("bearer"))])),
                    JSONMember("apiKey", .object([JSONMember("type", .string("apiKey")), JSONMember("in", .string("header")), JSONMember("name", .string("X-API-Key"))])),
                ])),
            ])),
            JSONMember("security", .array([.object([JSONMember("bearer", .array([]))]), .object([JSONMember("apiKey", .array([]))])])),
        ])
    }

    private mutating func operation(_ route: Route, id: String) -> JSONValue {
        var members = [JSONMember("operationId", .string(id)),
                       JSONMember("tags", .array([.string(String(route.method.service.split(separator: ".").last!))]))]
        let input = schema.messages[route.method.inputType]
        var parameters: [JSONValue] = []
        let bound = Set(route.template.boundFields)
        for path in route.template.boundFields {
            let field = resolve(path, in: input)
            parameters.append(.object([JSONMember("name", .string(path.replacingOccurrences(of: ".", with: "_"))), JSONMember("in", .string("path")), JSONMember("required", .bool(true)),
                                       JSONMember("schema", field.map { scalarSchema($0) } ?? .object([JSONMember("type", .string("string"))]))]))
        }
        if route.body != "*", let input {
            for field in input.fields where !bound.contains(field.name) && field.name != route.body && isQueryable(field) {
                var parameter = [JSONMember("name", .string(field.name)), JSONMember("in", .string("query"))]
                parameter.append(JSONMember("schema", field.isRepeated ? .object([JSONMember("type", .string("array")), JSONMember("items", scalarSchema(field))]) : scalarSchema(field)))
                if field.isRepeated { parameter.append(JSONMember("explode", .bool(true))) }
                parameters.append(.object(parameter))
            }
        }
        if route.httpMethod == "POST", input?.field(named: "request_id") != nil {
            // The gateway's IdempotencyKeyMiddleware: the header becomes the request id.
            parameters.append(.object([JSONMember("name", .string("Idempotency-Key")), JSONMember("in", .string("header")),
                                       JSONMember("required", .bool(false)),
                                       JSONMember("description", .string("Makes the POST safe to retry: the same key answers the first result; the same key with another body is 409.")),
                                       JSONMember("schema", .object([JSONMember("type", .string("string")), JSONMember("minLength", .integer(1)),
                                                                     JSONMember("maxLength", .integer(128))]))]))
        }
        if !parameters.isEmpty { members.append(JSONMember("parameters", .array(parameters))) }
        if !route.body.isEmpty {
            let bodySchema: JSONValue
            if route.body == "*" {
                bodySchema = reference(route.method.inputType)
            } else {
                bodySchema = input?.field(named: route.body).map { fieldSchema($0) } ?? .object([])
            }
            members.append(JSONMember("requestBody", .object([JSONMember("required", .bool(false)), JSONMember("content", .object([
                JSONMember("application/json", .object([JSONMember("schema", bodySchema)])),
            ]))])))
        }
        var responses: [JSONMember] = []
        let output = schema.messages[route.method.outputType]
        var outputSchema = reference(route.method.outputType)
        if !route.responseBody.isEmpty, let field = output?.field(named: route.responseBody) { outputSchema = fieldSchema(field) }
        if route.method.serverStreaming {
            responses.append(JSONMember("200", .object([JSONMember("description", .string("A stream of \(route.method.outputType) messages")), JSONMember("content", .object([
                JSONMember("text/event-stream", .object([JSONMember("schema", .object([JSONMember("type", .string("string"))]))])),
                JSONMember("application/x-ndjson", .object([JSONMember("schema", .object([JSONMember("type", .string("string"))]))])),
            ]))])))
        } else if output?.field(named: "status_path") != nil {
            responses.append(JSONMember("202", jsonResponse("Accepted; Location names the status resource", outputSchema)))
        } else if output?.field(named: "created") != nil {
            responses.append(JSONMember("201", jsonResponse("Created", outputSchema)))
            responses.append(JSONMember("204", .object([JSONMember("description", .string("Replaced (it existed)"))])))
        } else if route.httpMethod == "PUT" {
            responses.append(JSONMember("204", .object([JSONMember("description", .string("Stored"))])))
        } else {
            responses.append(JSONMember("200", jsonResponse("OK", outputSchema)))
        }
        responses.append(JSONMember("default", jsonResponse("An error (google.rpc.Status)", .object([JSONMember("$ref", .string("#/components/schemas/google.rpc.Status"))]))))
        members.append(JSONMember("responses", .object(responses)))
        return .object(members)
    }

    private func summaryOperation() -> JSONValue {
        .object([
            JSONMember("operationId", .string("Gateway_GetDeliverySummary")),
            JSONMember("tags", .array([.string("Gateway")])),
            JSONMember("description", .string("The delivery, its status, its package and its drone assignment in one response; partial when a non-essential backend is down.")),
            JSONMember("parameters", .array([.object([JSONMember("name", .string("delivery_id")), JSONMember("in", .string("path")), JSONMember("required", .bool(true)),
                                                      JSONMember("schema", .object([JSONMember("type", .string("string"))]))])])),
            JSONMember("responses", .object([
                JSONMember("200", jsonResponse("The summary", .object([JSONMember("type", .string("object")), JSONMember("required", .array([.string("delivery"), .string("status"), .string("partial")]))]))),
                JSONMember("default", jsonResponse("An error (google.rpc.Status)", .object([JSONMember("$ref", .string("#/components/schemas/google.rpc.Status"))]))),
            ])),
        ])
    }

    private func jsonResponse(_ description: String, _ schema: JSONValue) -> JSONValue {
        .object([JSONMember("description", .string(description)), JSONMember("content", .object([
            JSONMember("application/json", .object([JSONMember("schema", schema)])),
        ]))])
    }

    private func isQueryable(_ field: Schema.Field) -> Bool {
        if field.kind == .message { return Schema.stringLikeMessages.contains(field.typeName) || Schema.wrapperKinds[field.typeName] != nil }
        return field.kind != .group && field.kind != .bytes
    }

    private func resolve(_ path: String, in message: Schema.MessageType?) -> Schema.Field? {
        var current = message
        var result: Schema.Field?
        for name in path.split(separator: ".") {
            result = current?.field(named: String(name))
            current = result.flatMap { schema.messages[$0.typeName] }
        }
        return result
    }

    private mutating func reference(_ name: String) -> JSONValue {
        if let special = wellKnownSchema(name) { return special }
        referenced.insert(name)
        return .object([JSONMember("$ref", .string("#/components/schemas/\(name)"))])
    }

    private mutating func messageSchema(_ message: Schema.MessageType) -> JSONValue {
        var properties: [JSONMember] = []
        for field in message.fields { properties.append(JSONMember(field.jsonName, fieldSchema(field))) }
        return .object([JSONMember("type", .string("object")), JSONMember("properties", .object(properties))])
    }

    private mutating func fieldSchema(_ field: Schema.Field) -> JSONValue {
        if field.kind == .message, let entry = schema.messages[field.typeName], entry.isMapEntry, let value = entry.fields.first(where: { $0.number == 2 }) {
            return .object([JSONMember("type", .string("object")), JSONMember("additionalProperties", fieldSchema(value))])
        }
        let single: JSONValue = field.kind == .message ? reference(field.typeName) : scalarSchema(field)
        return field.isRepeated ? .object([JSONMember("type", .string("array")), JSONMember("items", single)]) : single
    }

    private func scalarSchema(_ field: Schema.Field) -> JSONValue {
        func type(_ name: String, _ extra: [JSONMember] = []) -> JSONValue { .object([JSONMember("type", .string(name))] + extra) }
        switch field.kind {
        case .string: return type("string")
        case .bytes: return type("string", [JSONMember("contentEncoding", .string("base64"))])
        case .bool: return type("boolean")
        case .int32, .sint32, .sfixed32:
            return .object([JSONMember("type", .array([.string("integer"), .string("string")])), JSONMember("format", .string("int32"))])
        case .uint32, .fixed32:
            return .object([JSONMember("type", .array([.string("integer"), .string("string")])), JSONMember("format", .string("uint32"))])
        case .int64, .sint64, .sfixed64, .uint64, .fixed64:
            // The JSON mapping writes 64-bit integers as strings and reads either form.
            return .object([JSONMember("type", .array([.string("string"), .string("integer")])), JSONMember("format", .string("int64"))])
        case .double, .float:
            return .object([JSONMember("type", .array([.string("number"), .string("string")]))])
        case .enum:
            let names = schema.enums[field.typeName]?.map { JSONValue.string($0.name) } ?? []
            return .object([JSONMember("type", .array([.string("string"), .string("integer")])), JSONMember("enum", .array(names))])
        case .message:
            if let special = wellKnownSchema(field.typeName) { return special }
            return type("object")
        case .group: return type("object")
        }
    }

    private func wellKnownSchema(_ name: String) -> JSONValue? {
        func type(_ name: String, _ extra: [JSONMember] = []) -> JSONValue { .object([JSONMember("type", .string(name))] + extra) }
        switch name {
        case "google.protobuf.Timestamp": return type("string", [JSONMember("format", .string("date-time"))])
        case "google.protobuf.Duration": return type("string", [JSONMember("pattern", .string("^-?[0-9]+(\\.[0-9]{1,9})?s$"))])
        case "google.protobuf.FieldMask": return type("string")
        case "google.protobuf.Empty": return type("object")
        case "google.protobuf.Struct", "google.protobuf.Any": return type("object")
        case "google.protobuf.Value": return .object([])
        case "google.protobuf.ListValue": return type("array")
        default:
            guard let kind = Schema.wrapperKinds[name] else { return nil }
            let field = Schema.Field(name: "value", jsonName: "value", number: 1, kind: kind, isRepeated: false, typeName: "", oneofIndex: nil)
            return scalarSchema(field)
        }
    }

    private func statusSchema() -> JSONValue {
        .object([JSONMember("type", .string("object")), JSONMember("properties", .object([
            JSONMember("code", .object([JSONMember("type", .string("integer"))])),
            JSONMember("message", .object([JSONMember("type", .string("string"))])),
            JSONMember("details", .object([JSONMember("type", .string("array")), JSONMember("items", .object([JSONMember("type", .string("object"))]))])),
        ]))])
    }
}
