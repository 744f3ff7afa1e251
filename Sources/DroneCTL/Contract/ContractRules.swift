import DynamicProtobuf
import ProtobufCodeGen
import ProtobufKit

/// The field rules (`buf.validate`) of the contract's messages, read with the code generator's own
/// parser, and what `dronectl contract verify` derives from them: a request that satisfies every
/// rule, and for each rule a request that breaks it (and only it, as far as the rules go).
///
/// Messages are JSON trees (proto3 JSON, the fields' JSON names); the generated types of the
/// contract then encode them and say, with the same checks the servers run, which rules a tree
/// breaks, so a derived request is only used once the local check agrees with what it is for.
struct ContractRules {
    let pool: DescriptorPool

    /// One request that breaks one rule: what it is for, and the tree.
    struct Mutation {
        /// `pickup_location.latitude: double.gte` (the proto path and the rule).
        var name: String
        var request: JSONValue
    }

    func rules(of field: ProtoField, in message: ProtoMessage) -> FieldRules? {
        guard let bytes = field.validationRules else { return nil }
        return try? ValidationRulesParser.fieldRules(bytes, field: field, what: "\(message.fullName).\(field.name)")
    }

    /// The oneofs a value must be set in: `option (buf.validate.oneof).required` and the message's
    /// `(buf.validate.message).oneof` rules, as lists of fields.
    func requiredOneofs(_ message: ProtoMessage) -> [(name: String, fields: [ProtoField])] {
        var result: [(String, [ProtoField])] = []
        for (index, oneof) in message.oneofs.enumerated() {
            guard let bytes = oneof.validationRules, (try? ValidationRulesParser.oneofRequired(bytes, what: oneof.name)) == true else { continue }
            result.append((oneof.name, message.fields.filter { $0.oneofIndex == index }))
        }
        if let bytes = message.validationRules, let rules = try? ValidationRulesParser.messageRules(bytes, what: message.fullName) {
            for rule in rules where rule.required {
                result.append((rule.fields.joined(separator: "|"), message.fields.filter { rule.fields.contains($0.name) }))
            }
        }
        return result
    }

    // MARK: - A valid message

    /// A message of `type` with every rule satisfied: the required fields and the fields with
    /// rules get a value that obeys them, one field of every required oneof is set, the rest is
    /// left out. Nested messages are built the same way, to a bounded depth.
    func validMessage(_ type: String, depth: Int = 0) -> JSONValue {
        if let wellKnown = wellKnownValue(type) { return wellKnown }
        guard depth < 6, let message = try? pool.message(type) else { return .object([]) }
        var members: [JSONMember] = []
        for field in message.fields {
            let rules = rules(of: field, in: message)
            guard let rules, rules.ignore != .always, rules.required || rules.type != nil else { continue }
            if field.oneofIndex != nil && !rules.required { continue }
            if field.isRepeated {
                if case .repeated(let repeated)? = rules.type, let minimum = repeated.minItems, minimum > 0 {
                    members.append(JSONMember(field.jsonName, .array(Array(repeating: validElement(field, repeated.items, depth: depth), count: Int(minimum)))))
                }
                continue
            }
            members.append(JSONMember(field.jsonName, validValue(field, rules, depth: depth)))
        }
        for (_, fields) in requiredOneofs(message) {
            guard let first = fields.first, !members.contains(where: { member in fields.contains { $0.jsonName == member.key } }) else { continue }
            let value = validValue(first, rules(of: first, in: message).flatMap { rules in
                if case .repeated(let repeated)? = rules.type { return repeated.items }
                return rules
            }, depth: depth)
            members.append(JSONMember(first.jsonName, first.isRepeated ? .array([value]) : value))
        }
        return .object(members)
    }

    func validElement(_ field: ProtoField, _ rules: FieldRules?, depth: Int) -> JSONValue {
        validValue(field, rules, depth: depth)
    }

    /// A value of one field (one element, for a repeated field) that obeys `rules`.
    func validValue(_ field: ProtoField, _ rules: FieldRules?, depth: Int) -> JSONValue {
        switch rules?.type {
        case .string(let string)?:
            return .string(validString(string))
        case .range(let range)?:
            return validNumber(range, field: field)
        case .enumeration(let rules)?:
            if let const = rules.const { return .integer(Int64(const)) }
            if let first = rules.inList.first { return .integer(Int64(first)) }
            return .integer(Int64(firstEnumValue(field.typeName, except: Set(rules.notIn))))
        default:
            return plainValue(field, depth: depth)
        }
    }

    /// A value of the field's type that is not its zero value (for a field that is only required).
    func plainValue(_ field: ProtoField, depth: Int) -> JSONValue {
        switch field.type {
        case .string: return .string("contract-test")
        case .bytes: return .string("Y29udHJhY3QtdGVzdA==")
        case .bool: return .bool(true)
        case .double, .float: return .number(1.5)
        case .enum: return .integer(Int64(firstEnumValue(field.typeName, except: [])))
        case .message, .group: return validMessage(field.typeName, depth: depth + 1)
        default: return .integer(1)
        }
    }

    func firstEnumValue(_ type: String, except: Set<Int32>) -> Int32 {
        guard let values = pool.enums[type]?.values else { return 1 }
        return values.first { $0.number != 0 && !except.contains($0.number) }?.number ?? values.first?.number ?? 0
    }

    func wellKnownValue(_ type: String) -> JSONValue? {
        switch type {
        case "google.protobuf.Timestamp": return .string("2026-01-01T00:00:00Z")
        case "google.protobuf.Duration": return .string("60s")
        case "google.protobuf.StringValue": return .string("contract-test")
        case "google.protobuf.BoolValue": return .bool(true)
        case "google.protobuf.DoubleValue", "google.protobuf.FloatValue": return .number(1.5)
        case "google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value", "google.protobuf.UInt64Value":
            return .integer(1)
        case "google.protobuf.Empty", "google.protobuf.Struct": return .object([])
        case "google.protobuf.FieldMask": return .string("")
        default: return nil
        }
    }

    func validString(_ rules: StringRules) -> String {
        if let const = rules.const { return const }
        if rules.email { return "contract-test@example.com" }
        if rules.uuid { return "00000000-0000-4000-8000-000000000000" }
        var candidates = ["contract-test", "1", "accounts/contract-test", "a"]
        if let prefix = rules.prefix { candidates = candidates.map { prefix + $0 } }
        if let suffix = rules.suffix { candidates = candidates.map { $0 + suffix } }
        if let contains = rules.contains { candidates = candidates.map { $0 + contains } }
        var value = candidates[0]
        if let pattern = rules.pattern, let regex = try? Regex(pattern) {
            value = candidates.first { $0.contains(regex) } ?? value
        }
        let limit = [rules.maxBytes, rules.maxLen, rules.len, rules.lenBytes].compactMap { $0 }.min()
        if let limit, value.utf8.count > limit { value = String(value.prefix(Int(limit))) }
        if let minimum = [rules.minLen, rules.minBytes, rules.len, rules.lenBytes].compactMap({ $0 }).max(), value.count < minimum {
            value += String(repeating: "x", count: Int(minimum) - value.count)
        }
        return value
    }

    func validNumber(_ rules: RangeRules, field: ProtoField) -> JSONValue {
        if rules.kind == "duration" {
            let low = rules.durations["gte"].map { $0.0 } ?? rules.durations["gt"].map { $0.0 + 1 }
            let high = rules.durations["lte"].map { $0.0 } ?? rules.durations["lt"].map { $0.0 - 1 }
            var seconds = low ?? 60
            if let high, seconds > high { seconds = high }
            return .string("\(seconds)s")
        }
        if let const = rules.const { return number(const.text, field: field) }
        if let first = rules.inList.first { return number(first.text, field: field) }
        let floating = field.type == .double || field.type == .float
        let gt = rules.gt.flatMap { Double($0.text) }, gte = rules.gte.flatMap { Double($0.text) }
        let lt = rules.lt.flatMap { Double($0.text) }, lte = rules.lte.flatMap { Double($0.text) }
        let low = gte ?? gt.map { floating ? $0 : $0 + 1 }, high = lte ?? lt.map { floating ? $0 : $0 - 1 }
        var value: Double
        switch (low, high) {
        case let (low?, high?): value = floating ? (low + high) / 2 : low
        case let (low?, nil): value = low + (gt != nil && floating ? 1 : 0)
        case let (nil, high?): value = high - (lt != nil && floating ? 1 : 0)
        case (nil, nil): value = 1
        }
        if floating, value == 0, gt == nil { value = 0.5 }
        return floating ? .number(value) : .integer(Int64(value))
    }

    func number(_ text: String, field: ProtoField) -> JSONValue {
        if let integer = Int64(text) { return field.type == .double || field.type == .float ? .number(Double(integer)) : .integer(integer) }
        return .number(Double(text) ?? 0)
    }

    // MARK: - Requests that break one rule

    /// Every request derived from `base` that breaks one rule of `type`: for each field with
    /// rules, each rule broken on its own (at the top level and in the nested messages `base`
    /// sets), and each required oneof left empty.
    func mutations(of base: JSONValue, type: String, path: String = "", depth: Int = 0) -> [Mutation] {
        guard depth < 6, case .object(let members) = base, let message = try? pool.message(type) else { return [] }
        var result: [Mutation] = []
        func replacing(_ field: ProtoField, with value: JSONValue?) -> JSONValue {
            var copy = members.filter { $0.key != field.jsonName && $0.key != field.name }
            if let value { copy.append(JSONMember(field.jsonName, value)) }
            return .object(copy)
        }
        for field in message.fields {
            let fieldPath = path.isEmpty ? field.name : path + "." + field.name
            let present = members.first { $0.key == field.jsonName || $0.key == field.name }?.value
            if let rules = rules(of: field, in: message), rules.ignore == .unspecified {
                if rules.required, present != nil {
                    result.append(Mutation(name: "\(fieldPath): required", request: replacing(field, with: nil)))
                }
                for (rule, value) in brokenValues(field, rules) {
                    result.append(Mutation(name: "\(fieldPath): \(rule)", request: replacing(field, with: value)))
                }
            }
            // The rules of a nested message the base sets.
            if field.type == .message, !field.isRepeated, let present, wellKnownValue(field.typeName) == nil {
                for nested in mutations(of: present, type: field.typeName, path: fieldPath, depth: depth + 1) {
                    result.append(Mutation(name: nested.name, request: replacing(field, with: nested.request)))
                }
            }
        }
        for (name, fields) in requiredOneofs(message) {
            let keys = Set(fields.flatMap { [$0.jsonName, $0.name] })
            guard members.contains(where: { keys.contains($0.key) }) else { continue }
            result.append(Mutation(name: "\(path.isEmpty ? name : path + "." + name): oneof required",
                                   request: .object(members.filter { !keys.contains($0.key) })))
        }
        return result
    }

    /// Values of a field that each break one of its rules, with the rule's name.
    func brokenValues(_ field: ProtoField, _ rules: FieldRules) -> [(String, JSONValue)] {
        switch rules.type {
        case .string(let string)?:
            return brokenStrings(string).map { ($0.0, .string($0.1)) }
        case .range(let range)?:
            return brokenNumbers(range, field: field)
        case .enumeration(let enumRules)?:
            var result: [(String, JSONValue)] = []
            if enumRules.definedOnly { result.append(("enum.defined_only", .integer(9_999))) }
            for value in enumRules.notIn { result.append(("enum.not_in", .integer(Int64(value)))) }
            if !enumRules.inList.isEmpty {
                let outside = pool.enums[field.typeName]?.values.map(\.number).first { !enumRules.inList.contains($0) } ?? 9_999
                result.append(("enum.in", .integer(Int64(outside))))
            }
            if let const = enumRules.const { result.append(("enum.const", .integer(Int64(const == 0 ? 1 : 0)))) }
            return result
        case .repeated(let repeated)?:
            var result: [(String, JSONValue)] = []
            let element = validElement(field, repeated.items, depth: 1)
            if let maximum = repeated.maxItems { result.append(("repeated.max_items", .array(Array(repeating: element, count: Int(maximum) + 1)))) }
            if let minimum = repeated.minItems, minimum > 0 { result.append(("repeated.min_items", .array(Array(repeating: element, count: Int(minimum) - 1)))) }
            if let items = repeated.items {
                for (rule, value) in brokenValues(field, items) { result.append(("repeated.items \(rule)", .array([value]))) }
            }
            return result
        default:
            return []
        }
    }

    func brokenStrings(_ rules: StringRules) -> [(String, String)] {
        var result: [(String, String)] = []
        if let maximum = rules.maxBytes { result.append(("string.max_bytes", String(repeating: "x", count: Int(maximum) + 1))) }
        if let maximum = rules.maxLen { result.append(("string.max_len", String(repeating: "x", count: Int(maximum) + 1))) }
        if let minimum = rules.minLen, minimum > 0 { result.append(("string.min_len", String(repeating: "x", count: Int(minimum) - 1))) }
        if let minimum = rules.minBytes, minimum > 0 { result.append(("string.min_bytes", String(repeating: "x", count: Int(minimum) - 1))) }
        if let pattern = rules.pattern, let regex = try? Regex(pattern),
           let value = ["x", " ", "", "/", "x/y/z", "\u{00e9}"].first(where: { !$0.contains(regex) }) {
            result.append(("string.pattern", value))
        }
        if rules.email { result.append(("string.email", "not-an-email")) }
        if rules.uuid { result.append(("string.uuid", "not-a-uuid")) }
        if let prefix = rules.prefix { result.append(("string.prefix", "x" + prefix.dropFirst())) }
        if let const = rules.const { result.append(("string.const", const + "x")) }
        return result
    }

    func brokenNumbers(_ rules: RangeRules, field: ProtoField) -> [(String, JSONValue)] {
        var result: [(String, JSONValue)] = []
        if rules.kind == "duration" {
            if let (seconds, _) = rules.durations["gt"] { result.append(("duration.gt", .string("\(seconds)s"))) }
            if let (seconds, _) = rules.durations["gte"] { result.append(("duration.gte", .string("\(seconds - 1)s"))) }
            if let (seconds, _) = rules.durations["lt"] { result.append(("duration.lt", .string("\(seconds)s"))) }
            if let (seconds, _) = rules.durations["lte"] { result.append(("duration.lte", .string("\(seconds + 1)s"))) }
            return result
        }
        let floating = field.type == .double || field.type == .float
        let unsigned = rules.kind.hasPrefix("uint") || rules.kind.hasPrefix("fixed")
        func value(_ number: Double) -> JSONValue? {
            if unsigned && number < 0 { return nil }
            return floating ? .number(number) : .integer(Int64(number))
        }
        let kind = rules.kind
        if let gt = rules.gt.flatMap({ Double($0.text) }), let broken = value(gt) { result.append(("\(kind).gt", broken)) }
        if let gte = rules.gte.flatMap({ Double($0.text) }), let broken = value(gte - 1) { result.append(("\(kind).gte", broken)) }
        if let lt = rules.lt.flatMap({ Double($0.text) }), let broken = value(lt) { result.append(("\(kind).lt", broken)) }
        if let lte = rules.lte.flatMap({ Double($0.text) }), let broken = value(lte + 1) { result.append(("\(kind).lte", broken)) }
        if rules.finite { result.append(("\(kind).finite", .string("Infinity"))) }
        for notIn in rules.notIn { if let number = Double(notIn.text), let broken = value(number) { result.append(("\(kind).not_in", broken)) } }
        if !rules.inList.isEmpty {
            let numbers = rules.inList.compactMap { Double($0.text) }
            if let broken = value((numbers.max() ?? 0) + 1) { result.append(("\(kind).in", broken)) }
        }
        return result
    }
}
