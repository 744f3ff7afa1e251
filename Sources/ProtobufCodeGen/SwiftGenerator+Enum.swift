// Enums: open Swift enums that keep values this version of the schema does not know.

extension SwiftGenerator {
    func emitEnum(_ value: ProtoEnum, into p: inout CodePrinter) {
        let typeName = SwiftNames.typeName(value.name)
        // The first name given to a number is the case; later aliases become static lets.
        var seen: Set<Int32> = []
        var cases: [(name: String, value: ProtoEnumValue)] = []
        var aliases: [(name: String, target: String, value: ProtoEnumValue)] = []
        var primaryForNumber: [Int32: String] = [:]
        for entry in value.values {
            let name = SwiftNames.enumCaseName(entry.name, enumName: value.name)
            if seen.insert(entry.number).inserted {
                cases.append((name, entry))
                primaryForNumber[entry.number] = name
            } else {
                aliases.append((name, primaryForNumber[entry.number]!, entry))
            }
        }
        p.docComment(value.comment)
        p.line("public enum \(typeName): ProtobufKit.Enum {")
        p.indent()
        for entry in cases {
            p.docComment(entry.value.comment)
            p.line("case \(SwiftNames.escaped(entry.name)) // = \(entry.value.number)")
        }
        p.line("/// A value this version of the schema does not know; kept so it survives re-encoding.")
        p.line("case unrecognized(Int32)")
        for alias in aliases {
            p.line()
            p.docComment(alias.value.comment)
            p.line("public static let \(SwiftNames.escaped(alias.name)) = \(typeName).\(SwiftNames.escaped(alias.target))")
        }
        p.line()
        p.line("/// The proto3 default, the value numbered zero.")
        p.line("public init() { self.init(rawValue: 0) }")
        p.line()
        p.block("public init(rawValue: Int32)") { p in
            p.switchBlock("switch rawValue") { p in
                for entry in cases {
                    p.line("case \(entry.value.number): self = .\(SwiftNames.escaped(entry.name))")
                }
                p.line("default: self = .unrecognized(rawValue)")
            }
        }
        p.line()
        p.block("public var rawValue: Int32") { p in
            p.switchBlock("switch self") { p in
                for entry in cases {
                    p.line("case .\(SwiftNames.escaped(entry.name)): return \(entry.value.number)")
                }
                p.line("case .unrecognized(let value): return value")
            }
        }
        p.line()
        p.line("/// The known values, in declaration order.")
        p.line("public static let allCases: [\(typeName)] = [\(cases.map { "." + SwiftNames.escaped($0.name) }.joined(separator: ", "))]")
        p.line()
        p.line("/// Proto names of the values (aliases included), for the JSON mapping.")
        p.line("public static let protoNames = ProtobufKit.EnumNames(\(value.fullName.swiftLiteral), [")
        p.indent()
        for entry in value.values {
            p.line("(\(entry.number), \(entry.name.swiftLiteral)),")
        }
        p.outdent()
        p.line("])")
        p.outdent()
        p.line("}")
    }
}
