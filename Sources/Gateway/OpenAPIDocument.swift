import Foundation
import ProtobufKit

/// The OpenAPI 3.1 document of the public API, generated from the same routes and schema the
/// gateway serves with, so the two cannot disagree. Served at `GET /openapi.json`.
struct OpenAPIDocument {
    let routes: RouteTable
    let schema: Schema
    /// Routes that take no credentials (`METHOD /template`, the configuration's publicRoutes).
    let publicRoutes: Set<String>
    private var referenced: Set<String> = []
    private var referencedOutputs: Set<String> = []
    /// While writing responses: messages as the gateway writes them, without the field rules
    /// (they say what a request must satisfy) under `<name>.Output`.
    private var responseMode = false

    init(routes: RouteTable, schema: Schema, publicRoutes: Set<String> = []) {
        self.routes = routes
        self.schema = schema
        self.publicRoutes = publicRoutes
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
            // One OpenAPI path per resource: bindings that differ only in their variables' field
            // paths (`{package_id}`, `{package.package_id}`) name them alike (PathTemplate).
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
            schemas.append(JSONMember(name, messageSchema(message, excluding: [])))
            pending += referenced.subtracting(done)
        }
        responseMode = true
        done = []
        pending = Array(referencedOutputs)
        while let name = pending.popLast() {
            guard done.insert(name).inserted, let message = schema.messages[name] else { continue }
            schemas.append(JSONMember(name + ".Output", messageSchema(message, excluding: [])))
            pending += referencedOutputs.subtracting(done)
        }
        responseMode = false
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
        for parameter in route.template.openAPIPathAndParameters.parameters {
            let field = resolve(parameter.fieldPath, in: input)
            var members = [JSONMember("name", .string(parameter.name)), JSONMember("in", .string("path")), JSONMember("required", .bool(true))]
            if parameter.whole, let field {
                members.append(JSONMember("schema", valueSchema(field, rules: field.rules, inPath: true)))
            } else {
                // One wildcard of a variable with its own segments (`{name=accounts/*}`): one
                // path segment; the field's rules apply to the whole value the template builds.
                members.append(JSONMember("description", .string("One segment of \(parameter.fieldPath), which is \(route.template.description)")))
                members.append(JSONMember("schema", .object([JSONMember("type", .string("string")), JSONMember("pattern", .string("^[^/]+$"))])))
            }
            parameters.append(.object(members))
        }
        // A patch: a body field with `ignore = IGNORE_ALWAYS` (UpdatePackage), whose rules the
        // service applies to the fields that change.
        let patch = route.body != "*" && !route.body.isEmpty && input?.field(named: route.body)?.rules?.ignoreAlways == true
        if patch {
            members.append(JSONMember("description", .string(
                "Changes the fields the body sets; a field left out, null or at its default (0, \"\", the _UNSPECIFIED value) stays as it is. "
                + "The query parameter update_mask (a FieldMask, as grpc-gateway takes it) can instead name the fields to change: a field it names "
                + "takes the body's value, a default included, and must then obey that field's rules. It is not listed as a parameter here because "
                + "that rule ties the query to the body, which OpenAPI cannot state.")))
        }
        if route.body != "*", let input {
            // The fields neither the path nor the body fills, by name; a message field by the
            // names of its fields (`owner.account_id`), as the transcoder reads them.
            func query(_ message: Schema.MessageType, prefix: String, required parentRequired: Bool, depth: Int) {
                for field in message.fields {
                    let name = prefix + field.name
                    guard !bound.contains(name), name != route.body, field.rules?.ignoreAlways != true else { continue }
                    // A patch's mask: in the description (above), not a parameter.
                    if patch, field.typeName == "google.protobuf.FieldMask" { continue }
                    let required = parentRequired && isRequired(field)
                    if isQueryable(field) {
                        var parameter = [JSONMember("name", .string(name)), JSONMember("in", .string("query"))]
                        if required { parameter.append(JSONMember("required", .bool(true))) }
                        if let pattern = Self.servicePatterns[message.fullName + "." + field.name] {
                            parameter.append(JSONMember("schema", .object([JSONMember("type", .string("string")), JSONMember("pattern", .string(pattern))])))
                        } else {
                            parameter.append(JSONMember("schema", valueSchema(field, rules: field.rules, inPath: true)))
                        }
                        if field.isRepeated { parameter.append(JSONMember("explode", .bool(true))) }
                        parameters.append(.object(parameter))
                    } else if field.kind == .message, !field.isRepeated, depth < 3, let nested = schema.messages[field.typeName], !nested.isMapEntry {
                        query(nested, prefix: name + ".", required: required, depth: depth + 1)
                    }
                }
            }
            query(input, prefix: "", required: true, depth: 0)
        }
        if route.httpMethod == "POST", input?.field(named: "request_id") != nil {
            // The gateway's IdempotencyKeyMiddleware: the header becomes the request id.
            parameters.append(.object([JSONMember("name", .string("Idempotency-Key")), JSONMember("in", .string("header")),
                                       JSONMember("required", .bool(false)),
                                       JSONMember("description", .string("Makes the POST safe to retry: the same key answers the first result; the same key with another body is 409.")),
                                       JSONMember("schema", .object([JSONMember("type", .string("string")), JSONMember("minLength", .integer(1)),
                                                                     JSONMember("maxLength", .integer(128)),
                                                                     // Visible ASCII, as the middleware checks.
                                                                     JSONMember("pattern", .string("^[!-~]+$"))]))]))
        }
        if !parameters.isEmpty { members.append(JSONMember("parameters", .array(parameters))) }
        if !route.body.isEmpty, let input {
            // The body without the fields the path binds (they come from the path).
            let boundPaths = route.template.boundFields.map { $0.split(separator: ".").map(String.init) }
            var bodySchema: JSONValue = .object([])
            var required = false
            if route.body == "*" {
                bodySchema = boundPaths.isEmpty ? reference(input.fullName) : messageSchema(input, excluding: boundPaths)
                // Required when a field is, or when the message must set one of several (a
                // required oneof, a service's "at least one of"): an absent body is `{}`.
                required = !requiredNames(input, excluding: boundPaths).isEmpty || Self.serviceAtLeastOne[input.fullName] != nil
                    || input.oneofs.contains { $0.required } || input.oneofRules.contains { $0.required }
            } else if let field = input.field(named: route.body) {
                let inner = boundPaths.filter { $0.first == field.name }.map { Array($0.dropFirst()) }
                if field.kind == .message, !field.isRepeated, !inner.isEmpty, let message = schema.messages[field.typeName] {
                    bodySchema = messageSchema(message, excluding: inner, patch: field.rules?.ignoreAlways == true)
                } else {
                    bodySchema = valueSchema(field, rules: field.rules, inPath: false)
                }
                required = field.rules?.required == true && field.rules?.ignoreAlways != true
            }
            members.append(JSONMember("requestBody", .object([JSONMember("required", .bool(required)), JSONMember("content", .object([
                JSONMember("application/json", .object([JSONMember("schema", bodySchema)])),
            ]))])))
        }
        if publicRoutes.contains(route.name) { members.append(JSONMember("security", .array([]))) }
        var responses: [JSONMember] = []
        responseMode = true
        defer { responseMode = false }
        let output = schema.messages[route.method.outputType]
        var outputSchema = reference(route.method.outputType)
        if !route.responseBody.isEmpty, let field = output?.field(named: route.responseBody) { outputSchema = valueSchema(field, rules: field.rules, inPath: false) }
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
        if responseMode {
            referencedOutputs.insert(name)
            return .object([JSONMember("$ref", .string("#/components/schemas/\(name).Output"))])
        }
        referenced.insert(name)
        return .object([JSONMember("$ref", .string("#/components/schemas/\(name)"))])
    }

    /// A message's JSON Schema: its fields by JSON name and no others (the gateway refuses an
    /// unknown field), `required` for the fields a rule requires, and its oneofs' rules.
    /// `excluding` leaves out fields the path binds: a path of one name is that field, a longer
    /// one a field of that field's message.
    private mutating func messageSchema(_ message: Schema.MessageType, excluding: [[String]], patch: Bool = false) -> JSONValue {
        if responseMode {
            let properties = message.fields.map { JSONMember($0.jsonName, valueSchema($0, rules: nil, inPath: false)) }
            return .object([JSONMember("type", .string("object")), JSONMember("properties", .object(properties)),
                            JSONMember("additionalProperties", .bool(false))])
        }
        let filled = Self.filledByGateway(message, schema: schema)
        var properties: [JSONMember] = []
        for field in message.fields {
            if excluding.contains([field.name]) { continue }
            let inner = excluding.filter { $0.count > 1 && $0[0] == field.name }.map { Array($0.dropFirst()) }
            if !inner.isEmpty, field.kind == .message, !field.isRepeated, let nested = schema.messages[field.typeName] {
                properties.append(JSONMember(field.jsonName, messageSchema(nested, excluding: inner)))
                continue
            }
            var value = valueSchema(field, rules: field.rules, inPath: false)
            // proto3 JSON reads null as the field's default: a field whose default obeys its
            // rules accepts null (a member of a real oneof does not: null there is a choice).
            // In a patch the default means "unchanged", whatever the field's rules say.
            if patch, !zeroIsValid(field), let zero = zeroSchema(field) { value = .object([JSONMember("anyOf", .array([zero, value]))]) }
            // An account the gateway fills from the caller's key when it is empty (TenancyPlan):
            // "" and null are the caller's account.
            let gatewayFills = filled.contains([field.jsonName])
            if gatewayFills, field.kind == .string, !field.isRepeated, !zeroIsValid(field) { value = .object([JSONMember("anyOf", .array([.object([JSONMember("const", .string(""))]), value]))]) }
            if zeroIsValid(field) || patch || gatewayFills, isNullable(field, in: message) { value = .object([JSONMember("anyOf", .array([value, .object([JSONMember("type", .string("null"))])]))]) }
            properties.append(JSONMember(field.jsonName, value))
        }
        var members = [JSONMember("type", .string("object")), JSONMember("properties", .object(properties)),
                       JSONMember("additionalProperties", .bool(false))]
        // A patch (a body field with `ignore = IGNORE_ALWAYS`, UpdatePackage) names only what
        // changes: nothing is required, and what it sets obeys the rules.
        // Nor is a field the gateway fills, or a message it fills an account in (`owner`).
        let required = patch ? [] : requiredNames(message, excluding: excluding).filter { name in !filled.contains { $0.first == name } }
        if !required.isEmpty { members.append(JSONMember("required", .array(required.map { .string($0) }))) }
        var all: [JSONValue] = []
        for (index, oneof) in message.oneofs.enumerated() {
            let fields = message.fields.filter { $0.oneofIndex == Int32(index) && !excluding.contains([$0.name]) }
            // A member is chosen when its name is present (any value).
            let chosen = fields.map { JSONValue.object([JSONMember("required", .array([.string($0.jsonName)]))]) }
            all += exclusive(chosen, required: oneof.required && !fields.isEmpty)
        }
        if let names = Self.serviceAtLeastOne[message.fullName] {
            let fields = names.compactMap { message.field(named: $0) }
            all.append(.object([JSONMember("anyOf", .array(fields.map(setCondition)))]))
        }
        for rule in message.oneofRules {
            // buf.validate.message oneof: a field is set when it is not its default.
            let fields = rule.fields.compactMap { message.field(named: $0) }.filter { !excluding.contains([$0.name]) }
            all += exclusive(fields.map(setCondition), required: rule.required && !fields.isEmpty)
        }
        if !all.isEmpty { members.append(JSONMember("allOf", .array(all))) }
        return .object(members)
    }

    /// JSON paths, from `message`, of the accounts the gateway fills with the caller's when they
    /// are empty (TenancyPlan's account rule): the public document need not ask for them.
    static func filledByGateway(_ message: Schema.MessageType, schema: Schema) -> [[String]] {
        guard let plan = try? TenancyPlan(messageName: message.fullName, schema: schema) else { return [] }
        return plan.rules.compactMap { rule in
            if case .account(let path) = rule { return path }
            return nil
        }
    }

    /// Rules a service checks by hand because they are not rules on one field
    /// (docs/contract-tests.md, "Field rules": "Left in the services"), where JSON Schema can say
    /// them, so the document promises no request the service refuses: at least one of these
    /// fields set...
    static let serviceAtLeastOne: [String: [String]] = [
        "fabrikam.dronedelivery.ingestion.v1.RescheduleDeliveryRequest": ["pickup_location", "dropoff_location", "pickup_time", "deadline", "expedited"],
        "fabrikam.dronedelivery.delivery.v1.NotifyMeRequest": ["email_address", "sms"],
    ]
    /// ...and the update masks' paths (Package: only size, weight and tag can change).
    static let servicePatterns: [String: String] = [
        "fabrikam.dronedelivery.package.v1.UpdatePackageRequest.update_mask": "^((size|weight|tag)(,(size|weight|tag))*)?$",
    ]

    /// At most one of `conditions` (and one when `required`).
    private func exclusive(_ conditions: [JSONValue], required: Bool) -> [JSONValue] {
        var out: [JSONValue] = []
        if conditions.count > 1 {
            var pairs: [JSONValue] = []
            for first in conditions.indices {
                for second in conditions.indices where second > first { pairs.append(.object([JSONMember("allOf", .array([conditions[first], conditions[second]]))])) }
            }
            out.append(.object([JSONMember("not", .object([JSONMember("anyOf", .array(pairs))]))]))
        }
        if required { out.append(.object([JSONMember("anyOf", .array(conditions))])) }
        return out
    }

    /// The field is present and not its default.
    private func setCondition(_ field: Schema.Field) -> JSONValue {
        let value: JSONValue
        if field.isRepeated {
            value = .object([JSONMember("type", .string("array")), JSONMember("minItems", .integer(1))])
        } else {
            switch field.kind {
            case .message, .group: value = .object([JSONMember("not", .object([JSONMember("type", .string("null"))]))])
            case .bool: value = .object([JSONMember("const", .bool(true))])
            case .string, .bytes: value = .object([JSONMember("type", .string("string")), JSONMember("minLength", .integer(1))])
            case .enum: value = .object([JSONMember("not", .object([JSONMember("enum", .array(zeroValues(field)))]))])
            default: value = .object([JSONMember("not", .object([JSONMember("enum", .array([.integer(0), .string("0")]))]))])
            }
        }
        return .object([JSONMember("required", .array([.string(field.jsonName)])),
                        JSONMember("properties", .object([JSONMember(field.jsonName, value)]))])
    }

    private func zeroValues(_ field: Schema.Field) -> [JSONValue] {
        var values: [JSONValue] = [.integer(0)]
        if let zero = schema.enums[field.typeName]?.first(where: { $0.number == 0 }) { values.append(.string(zero.name)) }
        return values
    }

    /// JSON names of the fields a rule requires (`required`, not ignored), less those the path binds.
    /// A scalar field (not in a oneof) that is absent has its default value: when the default
    /// breaks a rule (`gt: 0`, `not_in: [0]`, `min_len`), leaving the field out is refused too.
    private func requiredNames(_ message: Schema.MessageType, excluding: [[String]]) -> [String] {
        message.fields.filter { field in
            !excluding.contains([field.name]) && isRequired(field)
        }.map(\.jsonName)
    }

    private func isRequired(_ field: Schema.Field) -> Bool {
        guard let rules = field.rules, !rules.ignoreAlways else { return false }
        if rules.required { return true }
        let hasDefault = field.oneofIndex == nil && (field.isRepeated || (field.kind != .message && field.kind != .group))
        return hasDefault && !zeroIsValid(field)
    }

    private func isNullable(_ field: Schema.Field, in message: Schema.MessageType) -> Bool {
        guard let index = field.oneofIndex else { return true }
        // proto3 `optional` is a oneof of one field: null leaves it unset.
        return message.fields.filter { $0.oneofIndex == index }.count == 1
    }

    /// The schema of a field's value: an array for a repeated field, an object for a map, else
    /// one element; with the field rules that JSON Schema can say.
    private mutating func valueSchema(_ field: Schema.Field, rules: FieldRules?, inPath: Bool) -> JSONValue {
        let rules = rules?.ignoreAlways == true ? nil : rules
        if field.kind == .message, let entry = schema.messages[field.typeName], entry.isMapEntry, let value = entry.fields.first(where: { $0.number == 2 }) {
            var members = [JSONMember("type", .string("object")), JSONMember("additionalProperties", valueSchema(value, rules: nil, inPath: false))]
            if rules?.required == true { members.append(JSONMember("minProperties", .integer(1))) }
            return .object(members)
        }
        guard field.isRepeated else { return elementSchema(field, rules: rules) }
        var members = [JSONMember("type", .string("array")), JSONMember("items", elementSchema(field, rules: rules?.repeated?.items))]
        let minimum = max(rules?.repeated?.minItems ?? 0, rules?.required == true ? 1 : 0)
        if minimum > 0 { members.append(JSONMember("minItems", .integer(Int64(minimum)))) }
        if let maximum = rules?.repeated?.maxItems { members.append(JSONMember("maxItems", .integer(Int64(clamping: maximum)))) }
        if rules?.repeated?.unique == true { members.append(JSONMember("uniqueItems", .bool(true))) }
        return .object(members)
    }

    /// One value of the field's type, with the rules of one value.
    private mutating func elementSchema(_ field: Schema.Field, rules: FieldRules?) -> JSONValue {
        let rules = rules?.ignoreAlways == true ? nil : rules
        let value: JSONValue
        switch field.kind {
        case .message, .group:
            if field.typeName == "google.protobuf.Duration", let bounds = rules?.duration {
                return durationSchema(bounds)
            }
            return reference(field.typeName)
        default:
            value = scalarSchema(field, rules: rules)
        }
        guard let rules, rules.ignoreIfZero, let zero = zeroSchema(field, element: true) else { return value }
        // IGNORE_IF_ZERO_VALUE: the default passes whatever the rules say.
        return .object([JSONMember("anyOf", .array([zero, value]))])
    }

    /// The JSON forms of a field's default (nil for a message: null, which the caller adds).
    private func zeroSchema(_ field: Schema.Field, element: Bool = false) -> JSONValue? {
        if field.isRepeated, !element { return .object([JSONMember("type", .string("array")), JSONMember("maxItems", .integer(0))]) }
        switch field.kind {
        case .message, .group: return nil
        case .string, .bytes: return .object([JSONMember("const", .string(""))])
        case .bool: return .object([JSONMember("const", .bool(false))])
        case .enum: return .object([JSONMember("enum", .array(zeroValues(field)))])
        default: return .object([JSONMember("const", .integer(0))])
        }
    }

    /// A scalar in its canonical JSON form, narrowed by its rules. The document names one form
    /// per type (integers as numbers, 64-bit integers also as decimal strings, enums by name or
    /// number) and the ranges of the type, so whatever it allows, the gateway reads.
    private func scalarSchema(_ field: Schema.Field, rules: FieldRules?) -> JSONValue {
        let required = rules?.required == true
        switch field.kind {
        case .string:
            return stringSchema(rules?.string, required: required)
        case .bytes:
            var members = [JSONMember("type", .string("string")), JSONMember("contentEncoding", .string("base64")),
                           JSONMember("pattern", .string("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"))]
            if required { members.append(JSONMember("minLength", .integer(4))) }
            return .object(members)
        case .bool:
            return required ? .object([JSONMember("const", .bool(true))]) : .object([JSONMember("type", .string("boolean"))])
        case .enum:
            return enumSchema(field, rules: rules?.enumeration, required: required)
        case .message, .group:
            return .object([JSONMember("type", .string("object"))])
        default:
            return numberSchema(field.kind, rules: rules?.number, required: required)
        }
    }

    private func stringSchema(_ rules: FieldRules.StringRules?, required: Bool) -> JSONValue {
        var members = [JSONMember("type", .string("string"))]
        guard rules != nil || required else { return .object(members) }
        let rules = rules ?? FieldRules.StringRules()
        if let const = rules.const { members.append(JSONMember("const", .string(const))) }
        let minimum = [rules.minLen, rules.len, required ? 1 : nil, rules.minBytes.map { $0 > 0 ? 1 : 0 }].compactMap { $0 }.max() ?? 0
        if minimum > 0 { members.append(JSONMember("minLength", .integer(Int64(clamping: minimum)))) }
        // A character is one to four UTF-8 bytes: a byte limit is at least as strict as the same
        // number of characters, so maxLength holds it and the description says the rest.
        if let maximum = [rules.maxLen, rules.len, rules.maxBytes, rules.lenBytes].compactMap({ $0 }).min() {
            members.append(JSONMember("maxLength", .integer(Int64(clamping: maximum))))
        }
        if let bytes = rules.maxBytes ?? rules.lenBytes {
            members.append(JSONMember("description", .string("At most \(bytes) bytes of UTF-8.")))
        }
        var patterns: [String] = []
        if let pattern = rules.pattern { patterns.append(pattern) }
        if let prefix = rules.prefix { patterns.append("^" + escapeRegex(prefix)) }
        if let suffix = rules.suffix { patterns.append(escapeRegex(suffix) + "$") }
        if let contains = rules.contains { patterns.append(escapeRegex(contains)) }
        if patterns.count == 1 { members.append(JSONMember("pattern", .string(patterns[0]))) }
        if patterns.count > 1 { members.append(JSONMember("allOf", .array(patterns.map { .object([JSONMember("pattern", .string($0))]) }))) }
        if rules.email { members.append(JSONMember("format", .string("email"))) }
        if rules.uuid { members.append(JSONMember("format", .string("uuid"))) }
        return .object(members)
    }

    private func escapeRegex(_ text: String) -> String {
        var out = ""
        for character in text {
            if "\\^$.|?*+()[]{}/".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// The values an enum field may take: by name and by number.
    private func enumSchema(_ field: Schema.Field, rules: FieldRules.EnumRules?, required: Bool) -> JSONValue {
        let values = schema.enums[field.typeName] ?? []
        var excluded = Set(rules?.notIn ?? [])
        if required { excluded.insert(0) }
        var allowed: [Int32]?
        if let const = rules?.const { allowed = [const] }
        else if let list = rules?.inList, !list.isEmpty { allowed = list }
        else if rules?.definedOnly == true { allowed = values.map(\.number) }
        if var allowed {
            if rules?.definedOnly == true { allowed = allowed.filter { number in values.contains { $0.number == number } } }
            allowed = allowed.filter { !excluded.contains($0) }
            var list: [JSONValue] = values.filter { allowed.contains($0.number) }.map { .string($0.name) }
            var seen = Set<Int32>()
            for number in allowed where seen.insert(number).inserted { list.append(.integer(Int64(number))) }
            return .object([JSONMember("enum", .array(list))])
        }
        // Open: any defined name, or any 32-bit number, less the excluded ones.
        var number = [JSONMember("type", .string("integer")), JSONMember("format", .string("int32")),
                      JSONMember("minimum", .integer(Int64(Int32.min))), JSONMember("maximum", .integer(Int64(Int32.max)))]
        if !excluded.isEmpty { number.append(JSONMember("not", .object([JSONMember("enum", .array(excluded.sorted().map { .integer(Int64($0)) }))]))) }
        let names = values.filter { !excluded.contains($0.number) }.map { JSONValue.string($0.name) }
        return .object([JSONMember("anyOf", .array([.object([JSONMember("enum", .array(names))]), .object(number)]))])
    }

    private func numberValue(_ value: FieldRules.JSONNumberValue) -> JSONValue {
        switch value {
        case .integer(let integer): return .integer(integer)
        case .unsigned(let unsigned): return unsigned <= UInt64(Int64.max) ? .integer(Int64(unsigned)) : .number(Double(unsigned))
        case .double(let double): return double == double.rounded() && abs(double) < 1e15 ? .integer(Int64(double)) : .number(double)
        }
    }

    private func numberSchema(_ kind: Schema.Kind, rules: FieldRules.NumberRules?, required: Bool) -> JSONValue {
        var members: [JSONMember]
        var lower: JSONValue?, upper: JSONValue?
        var sixtyFour = false
        switch kind {
        case .int32, .sint32, .sfixed32:
            members = [JSONMember("type", .string("integer")), JSONMember("format", .string("int32"))]
            lower = .integer(Int64(Int32.min)); upper = .integer(Int64(Int32.max))
        case .uint32, .fixed32:
            members = [JSONMember("type", .string("integer")), JSONMember("format", .string("uint32"))]
            lower = .integer(0); upper = .integer(Int64(UInt32.max))
        case .int64, .sint64, .sfixed64:
            // The JSON mapping writes 64-bit integers as strings and reads either form.
            members = [JSONMember("type", .array([.string("string"), .string("integer")])), JSONMember("format", .string("int64"))]
            lower = .integer(Int64.min); upper = .integer(Int64.max)
            sixtyFour = true
        case .uint64, .fixed64:
            members = [JSONMember("type", .array([.string("string"), .string("integer")])), JSONMember("format", .string("uint64"))]
            lower = .integer(0); upper = .number(Double(UInt64.max))
            sixtyFour = true
        case .float:
            members = [JSONMember("type", .string("number")), JSONMember("format", .string("float"))]
            lower = .number(-Double(Float.greatestFiniteMagnitude)); upper = .number(Double(Float.greatestFiniteMagnitude))
        default:
            members = [JSONMember("type", .string("number")), JSONMember("format", .string("double"))]
        }
        var exclusiveLower: JSONValue?, exclusiveUpper: JSONValue?
        if let rules {
            if let gte = rules.gte { lower = numberValue(gte) }
            if let gt = rules.gt { exclusiveLower = numberValue(gt); lower = nil }
            if let lte = rules.lte { upper = numberValue(lte) }
            if let lt = rules.lt { exclusiveUpper = numberValue(lt); upper = nil }
            if let const = rules.const { members.append(JSONMember("const", numberValue(const))) }
            if !rules.inList.isEmpty { members.append(JSONMember("enum", .array(rules.inList.map(numberValue)))) }
        }
        if let lower { members.append(JSONMember("minimum", lower)) }
        if let upper { members.append(JSONMember("maximum", upper)) }
        if let exclusiveLower { members.append(JSONMember("exclusiveMinimum", exclusiveLower)) }
        if let exclusiveUpper { members.append(JSONMember("exclusiveMaximum", exclusiveUpper)) }
        var forbidden = (rules?.notIn ?? []).map(numberValue)
        if required { forbidden.append(.integer(0)) }
        if !forbidden.isEmpty { members.append(JSONMember("not", .object([JSONMember("enum", .array(forbidden))]))) }
        if sixtyFour {
            // The string form: a decimal of up to 18 digits (always in range); no sign when the
            // rules forbid negative values, no zero when they forbid zero.
            let nonNegative = rules?.gte.map { $0.doubleValue >= 0 } ?? false || rules?.gt.map { $0.doubleValue >= -1 } ?? false
                || kind == .uint64 || kind == .fixed64
            let positive = rules?.gt.map { $0.doubleValue >= 0 } ?? false || (nonNegative && required)
            let bounded = rules.map { $0.lt != nil || $0.lte != nil || $0.const != nil || !$0.inList.isEmpty || ($0.gte?.doubleValue ?? 0) > 0 || ($0.gt?.doubleValue ?? -1) > 0 } ?? false
            if bounded {
                // Bounds JSON Schema cannot put on a string: only the number form.
                members[0] = JSONMember("type", .string("integer"))
            } else {
                members.append(JSONMember("pattern", .string(positive ? "^[1-9][0-9]{0,17}$" : nonNegative ? "^(0|[1-9][0-9]{0,17})$" : "^(0|-?[1-9][0-9]{0,17})$")))
            }
        }
        // proto3 JSON writes a float or double that is not finite as a string ("NaN", "Infinity",
        // "-Infinity"): a response can carry one (a sum of finite weights can overflow), and so
        // can a request field without rules. A rule (a bound, `finite`) keeps them out.
        if kind == .double || kind == .float, responseMode || rules == nil {
            return .object([JSONMember("anyOf", .array([.object(members), .object([JSONMember("enum", .array([.string("NaN"), .string("Infinity"), .string("-Infinity")]))])]))])
        }
        return .object(members)
    }

    /// A Duration bounded by its rules: a positive duration when the rules say `gt: 0`, with an
    /// integer part of fewer digits than the upper bound (the exact bound is in the description).
    private func durationSchema(_ rules: FieldRules.DurationRules) -> JSONValue {
        let positive = (rules.gt ?? -1) >= 0 || (rules.gte ?? 0) > 0
        let upper = rules.lte ?? rules.lt
        let digits = upper.map { max(1, String(Int64($0)).count - 1) } ?? 11
        let fraction = "(\\.[0-9]{1,9})?"
        let pattern: String
        if positive {
            let wholes = "[1-9][0-9]{0,\(digits - 1)}\(fraction)"
            let fractions = (0..<9).map { "0{\($0)}[1-9][0-9]{0,\(8 - $0)}" }.joined(separator: "|")
            pattern = "^(\(wholes)|0\\.(\(fractions)))s$"
        } else {
            pattern = "^-?[0-9]{1,\(digits)}\(fraction)s$"
        }
        var words: [String] = []
        if let gt = rules.gt { words.append("more than \(gt)s") }
        if let gte = rules.gte { words.append("at least \(gte)s") }
        if let lt = rules.lt { words.append("less than \(lt)s") }
        if let lte = rules.lte { words.append("at most \(lte)s") }
        return .object([JSONMember("type", .string("string")), JSONMember("pattern", .string(pattern)),
                        JSONMember("description", .string("A duration (\(words.joined(separator: ", "))).\(upper == nil ? "" : " The pattern allows fewer digits than the bound.")"))])
    }

    /// Whether the field's default (absent, null, zero, empty) obeys its rules.
    private func zeroIsValid(_ field: Schema.Field) -> Bool {
        guard let rules = field.rules, !rules.ignoreAlways, !rules.ignoreIfZero else { return true }
        if rules.required { return false }
        if field.isRepeated { return (rules.repeated?.minItems ?? 0) == 0 }
        if let string = rules.string {
            if let const = string.const, !const.isEmpty { return false }
            if [string.len, string.minLen, string.minBytes, string.lenBytes].contains(where: { ($0 ?? 0) > 0 }) { return false }
            if string.email || string.uuid { return false }
            if [string.prefix, string.suffix, string.contains].contains(where: { !($0 ?? "").isEmpty }) { return false }
            if let pattern = string.pattern {
                guard let regex = try? Regex(pattern), "".firstMatch(of: regex) != nil else { return false }
            }
        }
        if let number = rules.number {
            if let const = number.const, const.doubleValue != 0 { return false }
            if !number.inList.isEmpty, !number.inList.contains(where: { $0.doubleValue == 0 }) { return false }
            if number.notIn.contains(where: { $0.doubleValue == 0 }) { return false }
            if let gt = number.gt, gt.doubleValue >= 0 { return false }
            if let gte = number.gte, gte.doubleValue > 0 { return false }
            if let lt = number.lt, lt.doubleValue <= 0 { return false }
            if let lte = number.lte, lte.doubleValue < 0 { return false }
        }
        if let enumeration = rules.enumeration {
            if let const = enumeration.const, const != 0 { return false }
            if !enumeration.inList.isEmpty, !enumeration.inList.contains(0) { return false }
            if enumeration.notIn.contains(0) { return false }
        }
        if let duration = rules.duration {
            if let gt = duration.gt, gt >= 0 { return false }
            if let gte = duration.gte, gte > 0 { return false }
            if let lt = duration.lt, lt <= 0 { return false }
            if let lte = duration.lte, lte < 0 { return false }
        }
        return true
    }

    /// A type (scalar or well-known) with no rules, for the well-known wrappers.
    private func plainSchema(_ field: Schema.Field) -> JSONValue { scalarSchema(field, rules: nil) }

    private func wellKnownSchema(_ name: String) -> JSONValue? {
        func type(_ name: String, _ extra: [JSONMember] = []) -> JSONValue { .object([JSONMember("type", .string(name))] + extra) }
        switch name {
        case "google.protobuf.Timestamp": return type("string", [JSONMember("format", .string("date-time"))])
        // At most 11 digits of seconds: always inside Duration's range (315,576,000,000 s).
        case "google.protobuf.Duration": return type("string", [JSONMember("pattern", .string("^-?[0-9]{1,11}(\\.[0-9]{1,9})?s$"))])
        case "google.protobuf.FieldMask": return type("string")
        case "google.protobuf.Empty": return type("object")
        case "google.protobuf.Struct", "google.protobuf.Any": return type("object")
        case "google.protobuf.Value": return .object([])
        case "google.protobuf.ListValue": return type("array")
        default:
            guard let kind = Schema.wrapperKinds[name] else { return nil }
            let field = Schema.Field(name: "value", jsonName: "value", number: 1, kind: kind, isRepeated: false, typeName: "", oneofIndex: nil)
            return plainSchema(field)
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
