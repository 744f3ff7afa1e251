// Field rules (buf.validate): a `_collectViolations(at:into:)` method for every message that has
// rules itself or holds, through its fields, a message that has. The checks are plain Swift:
// the standard rules need no CEL interpreter. Paths, rule ids and messages follow protovalidate
// (Tests/Fixtures/Validation holds a corpus both implementations are run on).

extension SwiftGenerator {
    /// Whether a message has rules of its own (field, oneof or message rules).
    func hasOwnRules(_ message: ProtoMessage) -> Bool {
        message.validationRules != nil || message.oneofs.contains { $0.validationRules != nil }
            || message.fields.contains { $0.validationRules != nil }
    }

    /// Full names of the messages that get checks: those with rules, and those with a field
    /// (not ignored) of such a type, transitively.
    func computeValidatedMessages() -> Set<String> {
        var all: [ProtoMessage] = []
        func collect(_ message: ProtoMessage) {
            all.append(message)
            message.nestedMessages.forEach(collect)
        }
        request.files.forEach { $0.messages.forEach(collect) }
        var validated = Set(all.filter(hasOwnRules).map(\.fullName))
        var changed = true
        while changed {
            changed = false
            for message in all where !validated.contains(message.fullName) {
                let reaches = message.fields.contains { field in
                    field.type == .message && validated.contains(field.typeName) && !isIgnoredAlways(field)
                }
                if reaches {
                    validated.insert(message.fullName)
                    changed = true
                }
            }
        }
        return validated
    }

    func isIgnoredAlways(_ field: ProtoField) -> Bool {
        guard let bytes = field.validationRules,
              let rules = try? ValidationRulesParser.fieldRules(bytes, field: field, what: field.name) else { return false }
        return rules.ignore == .always
    }

    /// The enum's defined numbers.
    func enumValues(_ fullName: String) -> [Int32]? {
        func search(_ enums: [ProtoEnum], _ messages: [ProtoMessage]) -> [Int32]? {
            if let found = enums.first(where: { $0.fullName == fullName }) { return found.values.map(\.number) }
            for message in messages {
                if let found = search(message.nestedEnums, message.nestedMessages) { return found }
            }
            return nil
        }
        for file in request.files {
            if let found = search(file.enums, file.messages) { return found }
        }
        return nil
    }

    func emitValidation(_ message: ProtoMessage, plans: [FieldPlan], into out: inout CodePrinter) throws {
        guard validatedMessages.contains(message.fullName) else { return }
        // The body first: a message whose rules check nothing (only `ignore`) keeps the default.
        var p = CodePrinter()
        // Message-level oneof rules: at most one of the fields set, and one if required.
        if let bytes = message.validationRules {
            for rule in try ValidationRulesParser.messageRules(bytes, what: "\(message.fullName) (buf.validate.message)") {
                var conditions: [String] = []
                for name in rule.fields {
                    guard let plan = plans.first(where: { $0.field.name == name }) else {
                        throw GeneratorError("\(message.fullName): buf.validate.message oneof names \(name), which is not a field")
                    }
                    conditions.append(isSetCondition(plan))
                }
                let list = rule.fields.joined(separator: ", ")
                p.block("do") { p in
                    p.line("let set = [\(conditions.joined(separator: ", "))].filter { $0 }.count")
                    p.line("if set > 1 { violations.append(ProtobufKit.ValidationViolation(field: path, ruleID: \"message.oneof\", message: \("only one of \(list) can be set".swiftLiteral))) }")
                    if rule.required {
                        p.line("if set == 0 { violations.append(ProtobufKit.ValidationViolation(field: path, ruleID: \"message.oneof\", message: \("one of \(list) must be set".swiftLiteral))) }")
                    }
                }
            }
        }
        for (index, oneof) in message.oneofs.enumerated() {
            guard let bytes = oneof.validationRules,
                  try ValidationRulesParser.oneofRequired(bytes, what: "\(message.fullName).\(oneof.name)") else { continue }
            _ = index
            let property = SwiftNames.escaped(oneofNames(oneof, in: message).property)
            p.line("if self.\(property) == nil { violations.append(ProtobufKit.ValidationViolation(field: ProtobufKit.Validation.path(path, \(oneof.name.swiftLiteral)), ruleID: \"required\", message: \"exactly one field is required in oneof\")) }")
        }
        for plan in plans {
            try emitFieldChecks(plan, message: message, into: &p)
        }
        guard !p.text.isEmpty else { return }
        out.line()
        out.line("public func _collectViolations(at path: String, into violations: inout [ProtobufKit.ValidationViolation]) {")
        out.indent()
        for line in p.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { out.line(String(line)) }
        out.outdent()
        out.line("}")
    }

    /// Whether a field counts as set (for oneof rules): a message present, a list not empty, a
    /// scalar not at its default.
    func isSetCondition(_ plan: FieldPlan) -> String {
        let name = "self." + plan.escapedName
        switch plan.shape {
        case .message, .boxedMessage: return "\(name) != nil"
        case .repeated, .map: return "!\(name).isEmpty"
        case .oneofMember(let oneof):
            return "{ if case .\(plan.escapedName)? = self.\(SwiftNames.escaped(SwiftNames.propertyName(oneof))) { return true }; return false }()"
        case .singular: return "\(name) != \(plan.defaultValue)"
        }
    }

    func emitFieldChecks(_ plan: FieldPlan, message: ProtoMessage, into p: inout CodePrinter) throws {
        let field = plan.field
        let what = "\(message.fullName).\(field.name)"
        let rules = try field.validationRules.map { try ValidationRulesParser.fieldRules($0, field: field, what: what) } ?? FieldRules()
        if rules.ignore == .always { return }
        let nested = field.type == .message && validatedMessages.contains(field.typeName)
        if case .map = plan.shape {
            if field.validationRules != nil || nested {
                throw GeneratorError("\(what): rules on map fields (or on the messages in them) are not supported by protoc-gen-swiftpbc")
            }
            return
        }
        guard field.validationRules != nil || nested else { return }
        let fieldPath = "ProtobufKit.Validation.path(path, \(field.name.swiftLiteral))"
        let requiredViolation = "violations.append(ProtobufKit.ValidationViolation(field: \(fieldPath), ruleID: \"required\", message: \"value is required\"))"
        let name = "self." + plan.escapedName
        switch plan.shape {
        case .singular where rules.type == nil:
            // Only `required` (or `ignore`): the value against its default.
            if rules.required && rules.ignore != .ifZeroValue { p.line("if \(name) == \(plan.defaultValue) { \(requiredViolation) }") }
        case .singular:
            p.block("do") { p in
                p.line("let value = \(name)")
                let zero = "value == \(plan.defaultValue)"
                if rules.ignore == .ifZeroValue {
                    p.line("if !(\(zero)) {")
                } else if rules.required {
                    p.line("if \(zero) { \(requiredViolation) } else {")
                } else {
                    p.line("do {")
                }
                p.indent()
                emitTypeChecks(rules.type, value: "value", fieldPath: fieldPath, plan: plan, into: &p)
                p.outdent()
                p.line("}")
            }
        case .message where rules.type == nil && !nested, .boxedMessage where rules.type == nil && !nested:
            // Only `required`: nothing to check inside.
            if rules.required { p.line("if \(name) == nil { \(requiredViolation) }") }
        case .message, .boxedMessage, .oneofMember:
            let binding: String
            if case .oneofMember(let oneof) = plan.shape {
                binding = "if case .\(plan.escapedName)(let value)? = self.\(SwiftNames.escaped(SwiftNames.propertyName(oneof)))"
            } else {
                binding = "if let value = \(name)"
            }
            p.line("\(binding) {")
            p.indent()
            if !(plan.field.type != .message && rules.ignore == .ifZeroValue) {
                emitTypeChecks(rules.type, value: "value", fieldPath: fieldPath, plan: plan, into: &p)
            } else {
                p.line("if value != \(plan.defaultValue) {")
                p.indent()
                emitTypeChecks(rules.type, value: "value", fieldPath: fieldPath, plan: plan, into: &p)
                p.outdent()
                p.line("}")
            }
            if nested { p.line("value._collectViolations(at: \(fieldPath), into: &violations)") }
            p.outdent()
            if rules.required {
                p.line("} else {")
                p.line("    \(requiredViolation)")
            }
            p.line("}")
        case .repeated:
            p.block("do") { p in
                p.line("let value = \(name)")
                if rules.ignore == .ifZeroValue {
                    p.line("if !value.isEmpty {")
                } else if rules.required {
                    p.line("if value.isEmpty { \(requiredViolation) } else {")
                } else {
                    p.line("do {")
                }
                p.indent()
                var items: FieldRules?
                if case .repeated(let repeated)? = rules.type {
                    if let min = repeated.minItems {
                        p.line("if UInt64(value.count) < \(min) { violations.append(ProtobufKit.ValidationViolation(field: \(fieldPath), ruleID: \"repeated.min_items\", message: \("must contain at least \(min) item(s)".swiftLiteral))) }")
                    }
                    if let max = repeated.maxItems {
                        p.line("if UInt64(value.count) > \(max) { violations.append(ProtobufKit.ValidationViolation(field: \(fieldPath), ruleID: \"repeated.max_items\", message: \("must contain no more than \(max) item(s)".swiftLiteral))) }")
                    }
                    if repeated.unique {
                        p.line("if Set(value).count != value.count { violations.append(ProtobufKit.ValidationViolation(field: \(fieldPath), ruleID: \"repeated.unique\", message: \"repeated value must contain unique items\")) }")
                    }
                    items = repeated.items
                }
                let itemChecks = items.map { $0.type != nil || $0.required } ?? false
                if itemChecks || nested {
                    p.line("for (index, item) in value.enumerated() {")
                    p.indent()
                    let itemPath = "ProtobufKit.Validation.path(\(fieldPath), index: index)"
                    if let items, itemChecks {
                        if items.ignore == .ifZeroValue && field.type != .message {
                            p.line("if item != \(SwiftGenerator.zeroValue(of: plan)) {")
                        } else {
                            p.line("do {")
                        }
                        p.indent()
                        emitTypeChecks(items.type, value: "item", fieldPath: itemPath, plan: plan, into: &p)
                        p.outdent()
                        p.line("}")
                    }
                    if nested { p.line("item._collectViolations(at: \(itemPath), into: &violations)") }
                    p.outdent()
                    p.line("}")
                }
                p.outdent()
                p.line("}")
            }
        case .map:
            return
        }
    }

    /// The zero value of one element of a repeated field.
    static func zeroValue(of plan: FieldPlan) -> String {
        switch plan.field.type {
        case .string: return "\"\""
        case .bytes: return "[]"
        case .bool: return "false"
        case .enum: return "\(plan.elementType)()"
        default: return "0"
        }
    }

    func violation(_ fieldPath: String, _ ruleID: String, _ message: String) -> String {
        "violations.append(ProtobufKit.ValidationViolation(field: \(fieldPath), ruleID: \(ruleID.swiftLiteral), message: \(message.swiftLiteral)))"
    }

    /// The checks of one value against its type's rules.
    func emitTypeChecks(_ rules: TypeRules?, value v: String, fieldPath: String, plan: FieldPlan, into p: inout CodePrinter) {
        switch rules {
        case nil, .repeated?:
            return
        case .string(let rules)?:
            if let const = rules.const {
                p.line("if \(v) != \(const.swiftLiteral) { \(violation(fieldPath, "string.const", "must equal `\(const)`")) }")
            }
            if let len = rules.len {
                p.line("if ProtobufKit.Validation.length(\(v)) != \(len) { \(violation(fieldPath, "string.len", "must be \(len) characters")) }")
            }
            if let min = rules.minLen {
                p.line("if ProtobufKit.Validation.length(\(v)) < \(min) { \(violation(fieldPath, "string.min_len", "must be at least \(min) characters")) }")
            }
            if let max = rules.maxLen {
                p.line("if ProtobufKit.Validation.length(\(v)) > \(max) { \(violation(fieldPath, "string.max_len", "must be at most \(max) characters")) }")
            }
            if let len = rules.lenBytes {
                p.line("if \(v).utf8.count != \(len) { \(violation(fieldPath, "string.len_bytes", "must be \(len) bytes")) }")
            }
            if let min = rules.minBytes {
                p.line("if \(v).utf8.count < \(min) { \(violation(fieldPath, "string.min_bytes", "must be at least \(min) bytes")) }")
            }
            if let max = rules.maxBytes {
                p.line("if \(v).utf8.count > \(max) { \(violation(fieldPath, "string.max_bytes", "must be at most \(max) bytes")) }")
            }
            if let pattern = rules.pattern {
                p.line("if !ProtobufKit.Validation.matches(\(v), \(pattern.swiftLiteral)) { \(violation(fieldPath, "string.pattern", "does not match regex pattern `\(pattern)`")) }")
            }
            if let prefix = rules.prefix {
                p.line("if !ProtobufKit.Validation.hasPrefix(\(v), \(prefix.swiftLiteral)) { \(violation(fieldPath, "string.prefix", "does not have prefix `\(prefix)`")) }")
            }
            if let suffix = rules.suffix {
                p.line("if !ProtobufKit.Validation.hasSuffix(\(v), \(suffix.swiftLiteral)) { \(violation(fieldPath, "string.suffix", "does not have suffix `\(suffix)`")) }")
            }
            if let part = rules.contains {
                p.line("if !ProtobufKit.Validation.contains(\(v), \(part.swiftLiteral)) { \(violation(fieldPath, "string.contains", "does not contain substring `\(part)`")) }")
            }
            if rules.email {
                p.line("if \(v).isEmpty { \(violation(fieldPath, "string.email_empty", "value is empty, which is not a valid email address")) }")
                p.line("else if !ProtobufKit.Validation.isEmail(\(v)) { \(violation(fieldPath, "string.email", "must be a valid email address")) }")
            }
            if rules.uuid {
                p.line("if \(v).isEmpty { \(violation(fieldPath, "string.uuid_empty", "value is empty, which is not a valid UUID")) }")
                p.line("else if !ProtobufKit.Validation.isUUID(\(v)) { \(violation(fieldPath, "string.uuid", "must be a valid UUID")) }")
            }
        case .enumeration(let rules)?:
            if let const = rules.const {
                p.line("if \(v).rawValue != \(const) { \(violation(fieldPath, "enum.const", "must equal \(const)")) }")
            }
            if rules.definedOnly {
                p.line("if case .unrecognized = \(v) { \(violation(fieldPath, "enum.defined_only", "value must be one of the defined enum values")) }")
            }
            if !rules.inList.isEmpty {
                let list = "[" + rules.inList.map(String.init).joined(separator: ", ") + "]"
                p.line("if !\(list).contains(\(v).rawValue) { \(violation(fieldPath, "enum.in", "must be in list \(list)")) }")
            }
            if !rules.notIn.isEmpty {
                let list = "[" + rules.notIn.map(String.init).joined(separator: ", ") + "]"
                p.line("if \(list).contains(\(v).rawValue) { \(violation(fieldPath, "enum.not_in", "must not be in list \(list)")) }")
            }
        case .range(let rules)?:
            emitRangeChecks(rules, value: v, fieldPath: fieldPath, into: &p)
        }
    }

    func emitRangeChecks(_ rules: RangeRules, value v: String, fieldPath: String, into p: inout CodePrinter) {
        let kind = rules.kind
        let isDuration = kind == "duration"
        // `v OP bound` as Swift.
        func compare(_ op: String, _ name: String, _ bound: RuleValue) -> String {
            if isDuration, let (seconds, nanos) = rules.durations[name] {
                return "ProtobufKit.Validation.compare(\(v), seconds: \(seconds), nanos: \(nanos)) \(op) 0"
            }
            return "\(v) \(op) \(bound.swift)"
        }
        if let const = rules.const {
            p.line("if !(\(compare("==", "const", const))) { \(violation(fieldPath, "\(kind).const", "must equal \(const.text)")) }")
        }
        var lower: (id: String, ok: String, text: String)?
        if let gt = rules.gt { lower = ("gt", compare(">", "gt", gt), "greater than \(gt.text)") }
        if let gte = rules.gte { lower = ("gte", compare(">=", "gte", gte), "greater than or equal to \(gte.text)") }
        var upper: (id: String, ok: String, text: String, bound: RuleValue)?
        if let lt = rules.lt { upper = ("lt", compare("<", "lt", lt), "less than \(lt.text)", lt) }
        if let lte = rules.lte { upper = ("lte", compare("<=", "lte", lte), "less than or equal to \(lte.text)", lte) }
        switch (lower, upper) {
        case let (lower?, upper?):
            // Bounds the other way round (lt below gt) allow the values outside the gap.
            let lowerBound = (rules.gt ?? rules.gte)!
            let exclusive = boundLess(upper.bound, lowerBound, rules: rules)
            let id = "\(kind).\(lower.id)_\(upper.id)\(exclusive ? "_exclusive" : "")"
            let message = "must be \(lower.text) \(exclusive ? "or" : "and") \(upper.text)"
            let ok = exclusive ? "(\(lower.ok)) || (\(upper.ok))" : "(\(lower.ok)) && (\(upper.ok))"
            p.line("if !(\(ok)) { \(violation(fieldPath, id, message)) }")
        case let (lower?, nil):
            p.line("if !(\(lower.ok)) { \(violation(fieldPath, "\(kind).\(lower.id)", "must be \(lower.text)")) }")
        case let (nil, upper?):
            p.line("if !(\(upper.ok)) { \(violation(fieldPath, "\(kind).\(upper.id)", "must be \(upper.text)")) }")
        case (nil, nil):
            break
        }
        if !rules.inList.isEmpty {
            let list = "[" + rules.inList.map(\.text).joined(separator: ", ") + "]"
            p.line("if ![\(rules.inList.map(\.swift).joined(separator: ", "))].contains(\(v)) { \(violation(fieldPath, "\(kind).in", "must be in list \(list)")) }")
        }
        if !rules.notIn.isEmpty {
            let list = "[" + rules.notIn.map(\.text).joined(separator: ", ") + "]"
            p.line("if [\(rules.notIn.map(\.swift).joined(separator: ", "))].contains(\(v)) { \(violation(fieldPath, "\(kind).not_in", "must not be in list \(list)")) }")
        }
        if rules.finite {
            p.line("if !\(v).isFinite { \(violation(fieldPath, "\(kind).finite", "must be finite")) }")
        }
    }

    /// Whether the upper bound lies below the lower one (the `_exclusive` form of a range).
    func boundLess(_ upper: RuleValue, _ lower: RuleValue, rules: RangeRules) -> Bool {
        if rules.kind == "duration" {
            let u = rules.durations[rules.lt != nil ? "lt" : "lte"]!, l = rules.durations[rules.gt != nil ? "gt" : "gte"]!
            return (u.0, u.1) < (l.0, l.1)
        }
        if let u = Double(upper.swift), let l = Double(lower.swift) { return u < l }
        return false
    }
}
