// Messages: the Swift value type, its conversion to and from protobuf-c structs, and its JSON.

/// How one field is represented, in Swift and in C.
struct FieldPlan {
    indirect enum Shape {
        /// A proto3 field without presence (scalars, strings, bytes, enums).
        case singular
        /// A singular message field: `T?` in Swift, a pointer in C.
        case message
        /// A singular message field stored in a `Box` because the type is recursive.
        case boxedMessage
        case repeated
        case map(key: FieldPlan, value: FieldPlan, entryCName: String, entryCInit: String)
        case oneofMember(oneof: String)
    }

    var field: ProtoField
    var shape: Shape
    /// Swift property (or oneof case) name, unescaped.
    var swiftName: String
    /// Swift type of one element (the property type for singular fields).
    var elementType: String
    /// The C struct member, escaped for use after `.` in Swift.
    var cField: String
    /// The C struct member holding the element count of a repeated field.
    var cCount: String
    /// For message and enum elements: the type's info.
    var typeInfo: TypeInfo?

    var escapedName: String { SwiftNames.escaped(swiftName) }

    var propertyType: String {
        switch shape {
        case .singular: return elementType
        case .message, .boxedMessage: return elementType + "?"
        case .repeated: return "[\(elementType)]"
        case .map(let key, let value, _, _): return "[\(key.elementType): \(value.elementType)]"
        case .oneofMember: return elementType
        }
    }

    var defaultValue: String {
        switch shape {
        case .message, .boxedMessage: return "nil"
        case .repeated: return "[]"
        case .map: return "[:]"
        case .singular, .oneofMember:
            switch field.type {
            case .string: return "\"\""
            case .bytes: return "[]"
            case .bool: return "false"
            case .enum: return "\(elementType)()"
            case .message: return "nil"
            default: return "0"
            }
        }
    }

    var isNullValueEnum: Bool { field.type == .enum && field.typeName == "google.protobuf.NullValue" }
    var isValueMessage: Bool { field.type == .message && field.typeName == "google.protobuf.Value" }
}

extension SwiftGenerator {
    static func swiftScalarType(_ type: ProtoFieldType) -> String {
        switch type {
        case .double: return "Double"
        case .float: return "Float"
        case .int64, .sint64, .sfixed64: return "Int64"
        case .uint64, .fixed64: return "UInt64"
        case .int32, .sint32, .sfixed32: return "Int32"
        case .uint32, .fixed32: return "UInt32"
        case .bool: return "Bool"
        case .string: return "String"
        case .bytes: return "[UInt8]"
        case .group, .message, .enum: return ""
        }
    }

    /// The JSON helper family for a scalar (`JSONWriter.int64`, `JSONDecode.int64`, ...).
    static func jsonScalarKind(_ type: ProtoFieldType) -> String {
        switch type {
        case .double: return "double"
        case .float: return "float"
        case .int64, .sint64, .sfixed64: return "int64"
        case .uint64, .fixed64: return "uint64"
        case .int32, .sint32, .sfixed32: return "int32"
        case .uint32, .fixed32: return "uint32"
        case .bool: return "bool"
        case .string: return "string"
        case .bytes: return "bytes"
        case .group, .message, .enum: return ""
        }
    }

    func elementPlan(_ field: ProtoField, shape: FieldPlan.Shape, swiftName: String) throws -> FieldPlan {
        var elementType = Self.swiftScalarType(field.type)
        var typeInfo: TypeInfo?
        if field.type == .message || field.type == .enum {
            let info = try info(field.typeName)
            typeInfo = info
            elementType = info.swiftName
        }
        if field.type == .group { throw GeneratorError("groups are not supported (field \(field.name))") }
        let cName = ProtobufCNames.fieldName(field.name)
        return FieldPlan(field: field, shape: shape, swiftName: swiftName, elementType: elementType,
                         cField: SwiftNames.escapedMember(cName), cCount: "n_" + cName, typeInfo: typeInfo)
    }

    func plans(for message: ProtoMessage) throws -> [FieldPlan] {
        try message.fields.map { field in
            let name = SwiftNames.propertyName(field.name)
            if let index = field.oneofIndex {
                return try elementPlan(field, shape: .oneofMember(oneof: message.oneofs[index].name), swiftName: name)
            }
            if field.isRepeated, field.type == .message, let entry = types[field.typeName]?.message, entry.isMapEntry {
                guard let keyField = entry.fields.first(where: { $0.number == 1 }),
                      let valueField = entry.fields.first(where: { $0.number == 2 }) else {
                    throw GeneratorError("map entry \(entry.fullName) lacks key or value")
                }
                let key = try elementPlan(keyField, shape: .singular, swiftName: "key")
                let value = try elementPlan(valueField, shape: valueField.type == .message ? .message : .singular, swiftName: "value")
                let entryInfo = try info(entry.fullName)
                return try elementPlan(field, shape: .map(key: key, value: value, entryCName: entryInfo.cName,
                                                          entryCInit: entryInfo.cFunctionPrefix + "__init"), swiftName: name)
            }
            if field.isRepeated { return try elementPlan(field, shape: .repeated, swiftName: name) }
            if field.type == .message {
                let boxed = reaches(field.typeName, message.fullName)
                return try elementPlan(field, shape: boxed ? .boxedMessage : .message, swiftName: name)
            }
            return try elementPlan(field, shape: .singular, swiftName: name)
        }
    }

    /// Swift name of a oneof's enum type and property.
    func oneofNames(_ oneof: ProtoOneof, in message: ProtoMessage) -> (type: String, property: String) {
        var typeName = SwiftNames.upperCamel(oneof.name)
        let nestedNames = Set(message.nestedMessages.map(\.name) + message.nestedEnums.map(\.name))
        if nestedNames.contains(typeName) || typeName == SwiftNames.typeName(message.name) { typeName += "Oneof" }
        return (typeName, SwiftNames.propertyName(oneof.name))
    }

    // MARK: - The Swift type

    func emitMessageType(_ message: ProtoMessage, into p: inout CodePrinter) throws {
        if message.isMapEntry { return }
        let plans = try plans(for: message)
        let typeName = SwiftNames.typeName(message.name)
        p.docComment(message.comment)
        p.line("public struct \(typeName): Sendable, Hashable {")
        p.indent()
        for plan in plans {
            switch plan.shape {
            case .oneofMember: continue
            case .boxedMessage:
                p.docComment(plan.field.comment)
                p.block("public var \(plan.escapedName): \(plan.propertyType)") { p in
                    p.line("get { _\(plan.swiftName)?.value }")
                    p.line("set { _\(plan.swiftName) = newValue.map(ProtobufKit.Box.init) }")
                }
                p.line("private var _\(plan.swiftName): ProtobufKit.Box<\(plan.elementType)>? = nil")
            default:
                p.docComment(plan.field.comment)
                p.line("public var \(plan.escapedName): \(plan.propertyType) = \(plan.defaultValue)")
            }
        }
        for (index, oneof) in message.oneofs.enumerated() {
            let names = oneofNames(oneof, in: message)
            let members = plans.filter { $0.field.oneofIndex == index }
            p.docComment(oneof.comment)
            p.line("public var \(SwiftNames.escaped(names.property)): \(names.type)? = nil")
            // A member whose type can reach this message needs an indirect case.
            let recursive = members.contains { $0.field.type == .message && reaches($0.field.typeName, message.fullName) }
            p.line()
            p.docComment(oneof.comment.isEmpty ? "The members of the `\(oneof.name)` oneof: at most one is set." : oneof.comment)
            p.block("public \(recursive ? "indirect " : "")enum \(names.type): Sendable, Hashable") { p in
                for member in members {
                    p.docComment(member.field.comment)
                    p.line("case \(member.escapedName)(\(member.elementType))")
                }
            }
        }
        p.line("/// Fields this version of the schema does not know, kept so re-encoding loses nothing.")
        p.line("public var unknownFields = ProtobufKit.UnknownFields()")
        p.line()
        p.line("public init() {}")
        for nested in message.nestedEnums {
            p.line()
            emitEnum(nested, into: &p)
        }
        for nested in message.nestedMessages where !nested.isMapEntry {
            p.line()
            try emitMessageType(nested, into: &p)
        }
        p.outdent()
        p.line("}")
    }

    // MARK: - Conformance: protobuf-c conversion and JSON

    func emitMessageConformance(_ message: ProtoMessage, into p: inout CodePrinter) throws {
        let info = try info(message.fullName)
        let plans = try plans(for: message)
        let cType = info.cName
        let cInit = info.cFunctionPrefix + "__init"
        let specialJSON = wellKnownTypesWithSpecialJSON.contains(message.fullName)
        let conformances = specialJSON ? "ProtobufKit.Message" : "ProtobufKit.Message, ProtobufKit.JSONMessage"
        p.line("extension \(info.swiftName): \(conformances) {")
        p.indent()
        p.line("public static let protoMessageName = \(message.fullName.swiftLiteral)")
        p.line()
        p.line("nonisolated(unsafe) private static let _descriptor: UnsafeRawPointer = {")
        p.line("    var message = \(cType)()")
        p.line("    \(cInit)(&message)")
        p.line("    return UnsafeRawPointer(message.base.descriptor)")
        p.line("}()")
        p.line()
        p.line("public static var _protobufCDescriptor: UnsafeRawPointer { _descriptor }")
        p.line()
        if needsWireScan(message.fullName) {
            p.line("public static var _needsWireScan: Bool { true }")
            p.line()
        }
        emitBuild(message, plans: plans, cType: cType, cInit: cInit, into: &p)
        p.line()
        emitRead(message, plans: plans, cType: cType, into: &p)
        if !specialJSON {
            p.line()
            emitJSONWrite(message, plans: plans, into: &p)
            p.line()
            emitJSONRead(message, plans: plans, into: &p)
        }
        try emitValidation(message, plans: plans, into: &p)
        p.outdent()
        p.line("}")
    }

    /// Swift expression converting a Swift element value `v` into its C representation;
    /// `field` is the field's full proto name, which the encoder's refusal of U+0000 names.
    func cValue(_ plan: FieldPlan, _ v: String, field: String) -> String {
        switch plan.field.type {
        case .string: return "arena.string(\(v), field: \(field.swiftLiteral))"
        case .bytes: return "ProtobufCBinaryData(len: \(v).count, data: arena.bytes(\(v)))"
        case .bool: return "\(v) ? 1 : 0"
        case .enum: return ".init(rawValue: .init(truncatingIfNeeded: \(v).rawValue))"
        case .message: return "\(v)._buildProtobufC(in: arena).assumingMemoryBound(to: \(plan.typeInfo!.cName).self)"
        default: return v
        }
    }

    /// Swift expression converting a C value `c` into the Swift element type (may throw).
    func swiftValue(_ plan: FieldPlan, _ c: String, context: String) -> String {
        switch plan.field.type {
        case .string: return "try ProtobufKit._protobufCString(\(c), field: \(context.swiftLiteral))"
        case .bytes: return "ProtobufKit._protobufCBytes(\(c).data, \(c).len)"
        case .bool: return "\(c) != 0"
        case .enum: return "\(plan.elementType)(rawValue: Int32(truncatingIfNeeded: \(c).rawValue))"
        case .message: return "try \(plan.elementType)(_protobufC: \(c)!)"
        default: return c
        }
    }

    func emitBuild(_ message: ProtoMessage, plans: [FieldPlan], cType: String, cInit: String, into p: inout CodePrinter) {
        p.line("public func _buildProtobufC(in arena: ProtobufKit.ProtobufCArena) -> UnsafeMutableRawPointer {")
        p.indent()
        p.line("let c = arena.allocate(MemoryLayout<\(cType)>.stride).bindMemory(to: \(cType).self, capacity: 1)")
        p.line("\(cInit)(c)")
        for plan in plans {
            let property = "self.\(plan.escapedName)"
            let cf = plan.cField
            let fieldName = message.fullName + "." + plan.field.name
            switch plan.shape {
            case .singular:
                p.line("c.pointee.\(cf) = \(cValue(plan, property, field: fieldName))")
            case .message, .boxedMessage:
                p.line("if let value = \(property) { c.pointee.\(cf) = \(cValue(plan, "value", field: fieldName)) }")
            case .repeated:
                p.block("if !\(property).isEmpty") { p in
                    p.line("c.pointee.\(plan.cCount) = \(property).count")
                    switch plan.field.type {
                    case .double, .float, .int64, .sint64, .sfixed64, .uint64, .fixed64, .int32, .sint32, .sfixed32, .uint32, .fixed32:
                        p.line("c.pointee.\(cf) = \(property).withUnsafeBytes { arena.copy($0) }.assumingMemoryBound(to: \(plan.elementType).self)")
                    default:
                        let cElement: String
                        switch plan.field.type {
                        case .string: cElement = "UnsafeMutablePointer<CChar>?"
                        case .bytes: cElement = "ProtobufCBinaryData"
                        case .bool: cElement = "protobuf_c_boolean"
                        case .enum: cElement = plan.typeInfo!.cName
                        default: cElement = "UnsafeMutablePointer<\(plan.typeInfo!.cName)>?"
                        }
                        p.line("let array = arena.allocate(MemoryLayout<\(cElement)>.stride * \(property).count).bindMemory(to: \(cElement).self, capacity: \(property).count)")
                        p.line("for (index, element) in \(property).enumerated() { array[index] = \(cValue(plan, "element", field: fieldName)) }")
                        p.line("c.pointee.\(cf) = array")
                    }
                }
            case .map(let key, let value, let entryCName, let entryCInit):
                p.block("if !\(property).isEmpty") { p in
                    p.line("c.pointee.\(plan.cCount) = \(property).count")
                    p.line("let array = arena.allocate(MemoryLayout<UnsafeMutablePointer<\(entryCName)>?>.stride * \(property).count).bindMemory(to: UnsafeMutablePointer<\(entryCName)>?.self, capacity: \(property).count)")
                    p.line("var index = 0")
                    p.block("for (key, value) in ProtobufKit._orderedMapEntries(\(property))") { p in
                        p.line("let entry = arena.allocate(MemoryLayout<\(entryCName)>.stride).bindMemory(to: \(entryCName).self, capacity: 1)")
                        p.line("\(entryCInit)(entry)")
                        p.line("entry.pointee.key = \(cValue(key, "key", field: fieldName))")
                        p.line("entry.pointee.value = \(cValue(value, "value", field: fieldName))")
                        p.line("array[index] = entry")
                        p.line("index += 1")
                    }
                    p.line("c.pointee.\(cf) = array")
                }
            case .oneofMember:
                continue
            }
        }
        for (index, oneof) in message.oneofs.enumerated() {
            let names = oneofNames(oneof, in: message)
            p.switchBlock("switch self.\(SwiftNames.escaped(names.property))") { p in
                for member in plans where member.field.oneofIndex == index {
                    p.line("case .\(member.escapedName)(let value)?:")
                    p.line("    c.pointee.\(ProtobufCNames.oneofCaseName(oneof.name)) = .init(rawValue: \(member.field.number))")
                    p.line("    c.pointee.\(member.cField) = \(cValue(member, "value", field: message.fullName + "." + member.field.name))")
                }
                p.line("case nil:")
                p.line("    break")
            }
        }
        // protobuf-c skips a float or double field equal to 0, which drops -0.0; proto3 counts
        // -0.0 as set (its bits are not zero), so it is written as an extra field instead.
        let floating = plans.filter { plan in
            if case .singular = plan.shape { return plan.field.type == .double || plan.field.type == .float }
            return false
        }
        if floating.isEmpty {
            p.line("if !unknownFields.isEmpty { arena.setUnknownFields(unknownFields, on: UnsafeMutableRawPointer(c)) }")
        } else {
            p.line("var negativeZeros: [ProtobufKit.UnknownFields.Field] = []")
            for plan in floating {
                let isDouble = plan.field.type == .double
                p.line("if self.\(plan.escapedName) == 0 && self.\(plan.escapedName).sign == .minus { negativeZeros.append(.negativeZero(number: \(plan.field.number), isDouble: \(isDouble))) }")
            }
            p.line("if !unknownFields.isEmpty || !negativeZeros.isEmpty { arena.setUnknownFields(unknownFields, adding: negativeZeros, on: UnsafeMutableRawPointer(c)) }")
        }
        p.line("return UnsafeMutableRawPointer(c)")
        p.outdent()
        p.line("}")
    }

    func emitRead(_ message: ProtoMessage, plans: [FieldPlan], cType: String, into p: inout CodePrinter) {
        p.line("public init(_protobufC pointer: UnsafeRawPointer) throws {")
        p.indent()
        if !plans.isEmpty {
            p.line("let c = pointer.assumingMemoryBound(to: \(cType).self)")
        }
        p.line("self.init()")
        for plan in plans {
            let property = "self.\(plan.escapedName)"
            let cf = plan.cField
            let context = message.fullName + "." + plan.field.name
            switch plan.shape {
            case .singular:
                p.line("\(property) = \(swiftValue(plan, "c.pointee.\(cf)", context: context))")
            case .message, .boxedMessage:
                p.line("if let value = c.pointee.\(cf) { \(property) = try \(plan.elementType)(_protobufC: value) }")
            case .repeated:
                switch plan.field.type {
                case .double, .float, .int64, .sint64, .sfixed64, .uint64, .fixed64, .int32, .sint32, .sfixed32, .uint32, .fixed32:
                    p.line("\(property) = Array(UnsafeBufferPointer(start: c.pointee.\(cf), count: c.pointee.\(plan.cCount)))")
                default:
                    p.block("if c.pointee.\(plan.cCount) > 0") { p in
                        p.line("\(property).reserveCapacity(c.pointee.\(plan.cCount))")
                        p.line("for index in 0..<c.pointee.\(plan.cCount) { \(property).append(\(swiftValue(plan, "c.pointee.\(cf)[index]", context: context))) }")
                    }
                }
            case .map(let key, let value, _, _):
                p.block("if c.pointee.\(plan.cCount) > 0") { p in
                    p.line("\(property).reserveCapacity(c.pointee.\(plan.cCount))")
                    p.block("for index in 0..<c.pointee.\(plan.cCount)") { p in
                        p.line("let entry = c.pointee.\(cf)[index]!")
                        let valueExpr: String
                        if value.field.type == .message {
                            valueExpr = "try entry.pointee.value.map { try \(value.elementType)(_protobufC: $0) } ?? \(value.elementType)()"
                        } else {
                            valueExpr = swiftValue(value, "entry.pointee.value", context: context)
                        }
                        p.line("\(property)[\(swiftValue(key, "entry.pointee.key", context: context))] = \(valueExpr)")
                    }
                }
            case .oneofMember:
                continue
            }
        }
        for (index, oneof) in message.oneofs.enumerated() {
            let names = oneofNames(oneof, in: message)
            p.switchBlock("switch c.pointee.\(ProtobufCNames.oneofCaseName(oneof.name)).rawValue") { p in
                for member in plans where member.field.oneofIndex == index {
                    let context = message.fullName + "." + member.field.name
                    p.line("case \(member.field.number):")
                    p.line("    self.\(SwiftNames.escaped(names.property)) = .\(member.escapedName)(\(swiftValue(member, "c.pointee.\(member.cField)", context: context)))")
                }
                p.line("default:")
                p.line("    break")
            }
        }
        p.line("self.unknownFields = ProtobufKit.UnknownFields(_protobufC: pointer)")
        p.outdent()
        p.line("}")
    }

    // MARK: JSON

    /// Statement(s) writing element value `v` of `plan` to the JSON writer `w`.
    func jsonWrite(_ plan: FieldPlan, _ v: String) -> String {
        switch plan.field.type {
        case .message: return "try \(v)._writeJSON(to: &w)"
        case .enum: return plan.isNullValueEnum ? "w.null()" : "w.enumValue(\(v))"
        default: return "w.\(Self.jsonScalarKind(plan.field.type))(\(v))"
        }
    }

    /// Condition under which a field without presence is written.
    func jsonNonDefault(_ plan: FieldPlan, _ v: String) -> String {
        switch plan.field.type {
        case .string, .bytes: return "!\(v).isEmpty"
        case .bool: return v
        case .enum: return "\(v).rawValue != 0"
        case .float, .double: return "\(v).bitPattern != 0"  // -0.0 counts as set
        default: return "\(v) != 0"
        }
    }

    func jsonKey(_ plan: FieldPlan) -> String {
        "w.key(\(plan.field.jsonName.swiftLiteral), \(plan.field.name.swiftLiteral))"
    }

    func emitJSONWrite(_ message: ProtoMessage, plans: [FieldPlan], into p: inout CodePrinter) {
        p.line("public func _writeJSONFields(to w: inout ProtobufKit.JSONWriter) throws {")
        p.indent()
        for plan in plans {
            let property = "self.\(plan.escapedName)"
            switch plan.shape {
            case .singular:
                p.line("if \(jsonNonDefault(plan, property)) || w.options.alwaysPrintFieldsWithNoPresence { \(jsonKey(plan)); \(jsonWrite(plan, property)) }")
            case .message, .boxedMessage:
                p.line("if let value = \(property) { \(jsonKey(plan)); \(jsonWrite(plan, "value")) }")
            case .repeated:
                p.block("if !\(property).isEmpty || w.options.alwaysPrintFieldsWithNoPresence") { p in
                    p.line(jsonKey(plan))
                    p.line("w.beginArray()")
                    p.line("for element in \(property) { w.arrayElement(); \(jsonWrite(plan, "element")) }")
                    p.line("w.endArray()")
                }
            case .map(let key, let value, _, _):
                p.block("if !\(property).isEmpty || w.options.alwaysPrintFieldsWithNoPresence") { p in
                    p.line(jsonKey(plan))
                    p.line("w.beginObject()")
                    let keyString: String
                    switch key.field.type {
                    case .string: keyString = "key"
                    case .bool: keyString = "key ? \"true\" : \"false\""
                    default: keyString = "String(key)"
                    }
                    p.line("for (key, value) in ProtobufKit._orderedMapEntries(\(property)) { w.mapKey(\(keyString)); \(jsonWrite(value, "value")) }")
                    p.line("w.endObject()")
                }
            case .oneofMember:
                continue
            }
        }
        for (index, oneof) in message.oneofs.enumerated() {
            let names = oneofNames(oneof, in: message)
            p.switchBlock("switch self.\(SwiftNames.escaped(names.property))") { p in
                for member in plans where member.field.oneofIndex == index {
                    p.line("case .\(member.escapedName)(let value)?: \(jsonKey(member)); \(jsonWrite(member, "value"))")
                }
                p.line("case nil: break")
            }
        }
        p.outdent()
        p.line("}")
    }

    /// Expression reading one element of `plan` from the scanner named `scanner`.
    func jsonRead(_ plan: FieldPlan, scanner: String) -> String {
        switch plan.field.type {
        case .message: return "try \(plan.elementType)(_jsonScanner: &\(scanner))"
        case .enum:
            if plan.isNullValueEnum { return "try \(scanner).nullValue() as \(plan.elementType)" }
            return "try \(scanner).enumValue(\(plan.elementType).self)"
        default: return "try \(scanner).\(Self.jsonScalarKind(plan.field.type))()"
        }
    }

    /// `{ read($0) }` for one element.
    func jsonReadClosure(_ plan: FieldPlan) -> String { "{ \(jsonRead(plan, scanner: "$0")) }" }

    func emitJSONRead(_ message: ProtoMessage, plans: [FieldPlan], into p: inout CodePrinter) {
        p.line("public mutating func _mergeJSONField(_ key: String, from scanner: inout ProtobufKit.JSONScanner) throws -> Int? {")
        p.indent()
        p.line("switch key {")
        for (index, plan) in plans.enumerated() {
            let names = plan.field.jsonName == plan.field.name
                ? plan.field.jsonName.swiftLiteral
                : "\(plan.field.jsonName.swiftLiteral), \(plan.field.name.swiftLiteral)"
            p.line("case \(names):")
            p.indent()
            // `null` leaves a field unset, except where null is itself a value.
            if !plan.isValueMessage && !plan.isNullValueEnum {
                p.line("if scanner.skipNull() { return \(index) }")
            }
            let property = "self.\(plan.escapedName)"
            let isOpenEnum = plan.field.type == .enum && !plan.isNullValueEnum
            switch plan.shape {
            case .singular:
                if isOpenEnum {
                    p.line("if let decoded = \(jsonRead(plan, scanner: "scanner")) { \(property) = decoded }")
                } else {
                    p.line("\(property) = \(jsonRead(plan, scanner: "scanner"))")
                }
            case .message, .boxedMessage:
                p.line("\(property) = \(jsonRead(plan, scanner: "scanner"))")
            case .repeated:
                let allowNull = plan.isValueMessage || plan.isNullValueEnum ? "allowNull: true, " : ""
                p.line("\(property) = try scanner.array(\(allowNull)\(jsonReadClosure(plan)))\(isOpenEnum ? ".compactMap { $0 }" : "")")
            case .map(let key, let value, _, _):
                let keyKind = Self.jsonScalarKind(key.field.type)
                let allowNull = value.isValueMessage || value.isNullValueEnum ? "allowNull: true, " : ""
                let valueIsOpenEnum = value.field.type == .enum && !value.isNullValueEnum
                p.line("\(property) = try scanner.map(\(allowNull)key: ProtobufKit.JSONScanner.mapKey_\(keyKind), \(jsonReadClosure(value)))\(valueIsOpenEnum ? ".compactMapValues { $0 }" : "")")
            case .oneofMember(let oneofName):
                let oneof = message.oneofs.first { $0.name == oneofName }!
                let names = oneofNames(oneof, in: message)
                let oneofProperty = "self.\(SwiftNames.escaped(names.property))"
                p.line("if \(oneofProperty) != nil { throw ProtobufKit.JSONDecodingError(\"more than one member of oneof '\(oneofName)' is set\") }")
                if isOpenEnum {
                    p.line("if let decoded = \(jsonRead(plan, scanner: "scanner")) { \(oneofProperty) = .\(plan.escapedName)(decoded) }")
                } else {
                    p.line("\(oneofProperty) = .\(plan.escapedName)(\(jsonRead(plan, scanner: "scanner")))")
                }
            }
            p.line("return \(index)")
            p.outdent()
        }
        p.line("default:")
        p.line("    return nil")
        p.line("}")
        p.outdent()
        p.line("}")
    }
}
