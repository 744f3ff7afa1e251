// Which flags a request message gets: one per field, nested message fields flattened with dots
// (`--package-info.weight`), repeated fields as repeated flags, maps as `key=value`, enums by
// name, well-known types in their JSON forms. What cannot be flattened (repeated messages,
// recursion, deep nesting) takes JSON text; `-d` takes the whole request.

/// One planned flag of a method command.
struct PlannedFlag {
    enum Shape { case singular, repeated, map(key: String, value: String) }
    /// The long name without dashes: `package-info.weight`.
    var longName: String
    /// The Swift property holding the parsed value.
    var propertyName: String
    /// JSON names from the request's root, dotted: `packageInfo.weight`.
    var jsonPath: String
    /// Proto names, dotted: `package_info.weight` (a `-d` document may use either).
    var protoPath: String
    /// `FieldFlag.Kind` as a Swift expression.
    var kind: String
    var shape: Shape
    /// For a singular bool (or a google.protobuf.Empty): an on/off flag instead of an option.
    var isSwitch: Bool
    /// Empty messages take no value: the flag only sets them.
    var isPresenceOnly: Bool
    /// Numbers may be negative: their values are taken even when they start with `-`.
    var isNumeric: Bool
    /// The oneof the field belongs to, qualified by its message's path (`target` or `plan.target`).
    var oneof: String?
    var help: String
    var valueName: String
    /// `CompletionKind` as a Swift expression, when the values are known.
    var completion: String?

    var declaration: String {
        let help = "help: ArgumentHelp(\(self.help.swiftLiteral)\(isSwitch ? "" : ", valueName: \(valueName.swiftLiteral)"))"
        let name = "name: .customLong(\(longName.swiftLiteral))"
        if isPresenceOnly {
            return "@Flag(\(name), \(help)) public var \(propertyName): Bool = false"
        }
        if isSwitch {
            return "@Flag(\(name), inversion: .prefixedNo, \(help)) public var \(propertyName): Bool?"
        }
        let completion = self.completion.map { ", completion: \($0)" } ?? ""
        switch shape {
        case .singular:
            let parsing = isNumeric ? ", parsing: .unconditional" : ""
            return "@Option(\(name)\(parsing), \(help)\(completion)) public var \(propertyName): String?"
        case .repeated, .map:
            let parsing = isNumeric ? ", parsing: .unconditionalSingleValue" : ""
            return "@Option(\(name)\(parsing), \(help)\(completion)) public var \(propertyName): [String] = []"
        }
    }

    var valueExpression: String {
        let shapeText: String
        switch shape {
        case .singular: shapeText = ".singular"
        case .repeated: shapeText = ".repeated"
        case .map(let key, let value): shapeText = ".map(key: \(key), value: \(value))"
        }
        let oneofText = oneof.map { ", oneof: \($0.swiftLiteral)" } ?? ""
        return "FieldFlag(\(longName.swiftLiteral), json: \(jsonPath.swiftLiteral), proto: \(protoPath.swiftLiteral), \(kind), \(shapeText)\(oneofText), \(propertyName))"
    }
}

/// Plans the flags of one request message.
struct FlagPlanner {
    let generator: CLIGenerator
    /// Nested messages are flattened this deep (`--a.b.c.d`); deeper ones take JSON.
    static let maxDepth = 4
    private(set) var swiftTypesUsed: Set<String> = []
    private var usedProperties: Set<String> = []
    private var usedNames: Set<String> = []

    init(generator: CLIGenerator) { self.generator = generator }

    mutating func flags(forMessage fullName: String) throws -> [PlannedFlag] {
        guard let message = try generator.types.info(fullName).message else { return [] }
        var flags: [PlannedFlag] = []
        try plan(message, flagPrefix: "", jsonPrefix: "", protoPrefix: "", oneofPrefix: "", typesOnPath: [fullName], into: &flags)
        return flags
    }

    private mutating func plan(_ message: ProtoMessage, flagPrefix: String, jsonPrefix: String, protoPrefix: String, oneofPrefix: String,
                               typesOnPath: [String], into flags: inout [PlannedFlag]) throws {
        for field in message.fields {
            let flagName = flagPrefix + CLIGenerator.kebab(snake: field.name)
            let jsonPath = jsonPrefix + field.jsonName
            let protoPath = protoPrefix + field.name
            let oneof = field.oneofIndex.flatMap { index -> String? in
                guard message.oneofs.indices.contains(index) else { return nil }
                // A proto3 `optional` field sits alone in a synthetic oneof: no choice to make.
                let members = message.fields.filter { $0.oneofIndex == index }
                return members.count > 1 ? oneofPrefix + message.oneofs[index].name : nil
            }
            var help = Self.oneLine(field.comment)
            if let oneof, let index = field.oneofIndex {
                let siblings = message.fields.filter { $0.oneofIndex == index }.map { "--" + flagPrefix + CLIGenerator.kebab(snake: $0.name) }
                help += (help.isEmpty ? "" : " ") + "(oneof \(message.oneofs[index].name): \(siblings.joined(separator: ", ")))"
                _ = oneof
            }
            let context = FieldContext(flagName: flagName, jsonPath: jsonPath, protoPath: protoPath, oneof: oneof, help: help)

            if field.type == .message, let info = generator.types.types[field.typeName], let nested = info.message, nested.isMapEntry {
                try planMap(field, entry: nested, context, into: &flags)
                continue
            }
            if field.type == .message && !CLIGenerator.leafMessageTypes.keys.contains(field.typeName) && !field.isRepeated {
                let info = try generator.types.info(field.typeName)
                let depth = typesOnPath.count
                if let nested = info.message, depth < Self.maxDepth, !typesOnPath.contains(field.typeName), !nested.fields.isEmpty {
                    try plan(nested, flagPrefix: flagName + ".", jsonPrefix: jsonPath + ".", protoPrefix: protoPath + ".",
                             oneofPrefix: jsonPath + ".", typesOnPath: typesOnPath + [field.typeName], into: &flags)
                    continue
                }
            }
            try append(try valueFlag(field, context, shape: field.isRepeated ? .repeated : .singular), to: &flags)
        }
    }

    struct FieldContext {
        var flagName: String
        var jsonPath: String
        var protoPath: String
        var oneof: String?
        var help: String
    }

    private mutating func planMap(_ field: ProtoField, entry: ProtoMessage, _ context: FieldContext, into flags: inout [PlannedFlag]) throws {
        guard entry.fields.count == 2 else { throw GeneratorError("map entry \(entry.fullName) does not have two fields") }
        let key = entry.fields[0]
        let value = entry.fields[1]
        let keyKind = try kind(of: key).expression
        let valueKind = try kind(of: value)
        var flag = try valueFlag(value, context, shape: .map(key: keyKind, value: valueKind.expression))
        flag.valueName = "key=" + valueKind.valueName
        flag.isSwitch = false
        flag.isPresenceOnly = false
        try append(flag, to: &flags)
    }

    private mutating func append(_ flag: PlannedFlag, to flags: inout [PlannedFlag]) throws {
        var flag = flag
        if CLIGenerator.reservedFlagNames.contains(flag.longName) { flag.longName += "-field" }
        guard usedNames.insert(flag.longName).inserted else {
            throw GeneratorError("two request fields would both be the flag --\(flag.longName)")
        }
        var property = SwiftNames.lowerCamel(flag.longName.map { $0 == "-" || $0 == "." ? "_" : $0 }.map(String.init).joined()) + "Flag"
        var suffix = 2
        while !usedProperties.insert(property).inserted {
            property = SwiftNames.lowerCamel(flag.longName.map { $0 == "-" || $0 == "." ? "_" : $0 }.map(String.init).joined()) + "Flag\(suffix)"
            suffix += 1
        }
        flag.propertyName = property
        flags.append(flag)
    }

    struct Kind {
        var expression: String
        var valueName: String
        var isNumeric = false
        var isBool = false
        var isEmpty = false
        var completion: String?
    }

    /// The runtime kind of one field's values.
    private mutating func kind(of field: ProtoField) throws -> Kind {
        switch field.type {
        case .double, .float: return Kind(expression: ".number", valueName: "number", isNumeric: true)
        case .int32, .sint32, .sfixed32: return Kind(expression: ".integer", valueName: "int", isNumeric: true)
        case .uint32, .fixed32: return Kind(expression: ".integer", valueName: "uint", isNumeric: true)
        case .int64, .sint64, .sfixed64: return Kind(expression: ".int64", valueName: "int64", isNumeric: true)
        case .uint64, .fixed64: return Kind(expression: ".int64", valueName: "uint64", isNumeric: true)
        case .bool: return Kind(expression: ".bool", valueName: "bool", isBool: true)
        case .string: return Kind(expression: ".string", valueName: "string")
        case .bytes: return Kind(expression: ".bytes", valueName: "base64|@file")
        case .enum:
            let info = try generator.types.info(field.typeName)
            swiftTypesUsed.insert(info.swiftName)
            let names = "DroneCTL.enumNames(\(info.swiftName).self)"
            let shortName = field.typeName.split(separator: ".").last.map(String.init) ?? field.typeName
            return Kind(expression: ".enumeration(\(names))", valueName: shortName, completion: ".list(\(names))")
        case .group:
            throw GeneratorError("field \(field.name): groups are not supported")
        case .message:
            if let leaf = CLIGenerator.leafMessageTypes[field.typeName] { return leaf }
            return Kind(expression: ".json", valueName: "JSON")
        }
    }

    private mutating func valueFlag(_ field: ProtoField, _ context: FieldContext, shape: PlannedFlag.Shape) throws -> PlannedFlag {
        let kind = try kind(of: field)
        var isSwitch = false
        if case .singular = shape, kind.isBool || kind.isEmpty { isSwitch = true }
        return PlannedFlag(longName: context.flagName, propertyName: "", jsonPath: context.jsonPath, protoPath: context.protoPath,
                           kind: kind.expression, shape: shape, isSwitch: isSwitch,
                           isPresenceOnly: isSwitch && kind.isEmpty, isNumeric: kind.isNumeric, oneof: context.oneof,
                           help: context.help, valueName: kind.valueName, completion: kind.completion)
    }

    /// A comment as one line of help: its first paragraph, lines joined.
    static func oneLine(_ comment: String) -> String {
        var lines: [String] = []
        for line in comment.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = String(line).trimmingSpaces
            if trimmed.isEmpty { if lines.isEmpty { continue } else { break } }
            lines.append(trimmed)
        }
        return lines.joined(separator: " ")
    }
}

extension CLIGenerator {
    /// Well-known types that are one flag each, in their JSON form.
    static let leafMessageTypes: [String: FlagPlanner.Kind] = [
        "google.protobuf.Timestamp": .init(expression: ".timestamp", valueName: "RFC3339"),
        "google.protobuf.Duration": .init(expression: ".duration", valueName: "duration"),
        "google.protobuf.FieldMask": .init(expression: ".fieldMask", valueName: "paths"),
        "google.protobuf.DoubleValue": .init(expression: ".number", valueName: "number", isNumeric: true),
        "google.protobuf.FloatValue": .init(expression: ".number", valueName: "number", isNumeric: true),
        "google.protobuf.Int32Value": .init(expression: ".integer", valueName: "int", isNumeric: true),
        "google.protobuf.UInt32Value": .init(expression: ".integer", valueName: "uint", isNumeric: true),
        "google.protobuf.Int64Value": .init(expression: ".int64", valueName: "int64", isNumeric: true),
        "google.protobuf.UInt64Value": .init(expression: ".int64", valueName: "uint64", isNumeric: true),
        "google.protobuf.BoolValue": .init(expression: ".bool", valueName: "bool", isBool: true),
        "google.protobuf.StringValue": .init(expression: ".string", valueName: "string"),
        "google.protobuf.BytesValue": .init(expression: ".bytes", valueName: "base64|@file"),
        "google.protobuf.Struct": .init(expression: ".json", valueName: "JSON"),
        "google.protobuf.Value": .init(expression: ".json", valueName: "JSON"),
        "google.protobuf.ListValue": .init(expression: ".json", valueName: "JSON"),
        "google.protobuf.Any": .init(expression: ".json", valueName: "JSON"),
        "google.protobuf.Empty": .init(expression: ".empty", valueName: "", isEmpty: true),
    ]
}
