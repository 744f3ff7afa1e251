// Names: how proto names become Swift names, and how protoc-c names its C declarations.

/// The naming rules of protoc-c 1.4 (protoc-c/c_helpers.cc), restated so generated Swift can
/// refer to the C structs, init functions and fields that protoc-c emits for the same file.
public enum ProtobufCNames {
    /// `pkg.sub.Outer.inner_msg` -> `Pkg__Sub__Outer__InnerMsg` (each piece: drop `_`, capitalize next).
    public static func structName(fullName: String) -> String {
        fullName.split(separator: ".").map { toCamel(String($0)) }.joined(separator: "__")
    }

    /// `pkg.sub.OuterMsg` -> `pkg__sub__outer_msg` (each piece: `_` before an upper case letter
    /// that follows a lower case one, then lower case).
    public static func functionPrefix(fullName: String) -> String {
        fullName.split(separator: ".").map { camelToLower(String($0)) }.joined(separator: "__")
    }

    /// A field's member name in the C struct: lower case, `_` appended to C/C++ keywords.
    public static func fieldName(_ protoName: String) -> String {
        let lower = protoName.lowercased()
        return cKeywords.contains(lower) ? lower + "_" : lower
    }

    /// The member that records which oneof member is set.
    public static func oneofCaseName(_ oneofName: String) -> String {
        oneofName.lowercased() + "_case"
    }

    static func toCamel(_ name: String) -> String {
        var result = ""
        var nextUpper = true
        for character in name {
            if character == "_" {
                nextUpper = true
            } else if nextUpper {
                result += character.uppercased()
                nextUpper = false
            } else {
                result.append(character)
            }
        }
        return result
    }

    static func camelToLower(_ name: String) -> String {
        var result = ""
        var wasUpper = true
        for character in name {
            let isUpper = character.isASCII && character.isUppercase
            if isUpper {
                if !wasUpper { result += "_" }
                result += character.lowercased()
            } else {
                result.append(character)
            }
            wasUpper = isUpper
        }
        return result
    }

    static let cKeywords: Set<String> = [
        "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch", "char",
        "class", "compl", "const", "const_cast", "continue", "default", "delete", "do", "double",
        "dynamic_cast", "else", "enum", "explicit", "extern", "false", "float", "for", "friend", "goto",
        "if", "inline", "int", "long", "mutable", "namespace", "new", "not", "not_eq", "operator", "or",
        "or_eq", "private", "protected", "public", "register", "reinterpret_cast", "return", "short",
        "signed", "sizeof", "static", "static_cast", "struct", "switch", "template", "this", "throw",
        "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using", "virtual", "void",
        "volatile", "wchar_t", "while", "xor", "xor_eq",
    ]
}

/// Swift naming rules for generated code.
public enum SwiftNames {
    /// `fabrikam.dronedelivery.delivery.v1` -> [`Fabrikam`, `Dronedelivery`, `Delivery`, `V1`].
    public static func namespaceComponents(package: String) -> [String] {
        package.split(separator: ".").map { upperCamel(String($0)) }
    }

    /// `foo_bar_baz` -> `FooBarBaz`; `HTTPRule` stays `HTTPRule`.
    public static func upperCamel(_ name: String) -> String {
        let camel = lowerCamel(name)
        guard let first = camel.first else { return camel }
        return first.uppercased() + camel.dropFirst()
    }

    /// `foo_bar_baz` -> `fooBarBaz`; `FOO_BAR` -> `fooBar`; `fooBar` stays.
    public static func lowerCamel(_ name: String) -> String {
        let parts = name.split(separator: "_", omittingEmptySubsequences: true).map(String.init)
        guard !parts.isEmpty else { return name }
        let allUpper = name.allSatisfy { !$0.isLetter || $0.isUppercase }
        var result = ""
        for (index, part) in parts.enumerated() {
            let piece = allUpper ? part.lowercased() : part
            if index == 0 {
                result += piece.prefix(1).lowercased() + piece.dropFirst()
            } else {
                result += piece.prefix(1).uppercased() + piece.dropFirst()
            }
        }
        return result
    }

    /// A message or enum type name, renamed where it would clash with Swift.
    public static func typeName(_ protoName: String) -> String {
        reservedTypeNames.contains(protoName) ? protoName + "Message" : protoName
    }

    /// A property name for a field (lowerCamelCase of the proto name), escaped if a keyword.
    public static func propertyName(_ protoName: String) -> String {
        var name = lowerCamel(protoName)
        if reservedMemberNames.contains(name) { name += "_" }
        return name
    }

    /// Wraps a name in backticks when Swift requires it.
    public static func escaped(_ name: String) -> String {
        swiftKeywords.contains(name) ? "`\(name)`" : name
    }

    /// A member name after `.`: escaped if it is a keyword or `self`.
    public static func escapedMember(_ name: String) -> String {
        swiftKeywords.contains(name) || name == "self" || name == "Self" || name == "Type" ? "`\(name)`" : name
    }

    /// Enum case names: strip the UPPER_SNAKE enum-name prefix, then lowerCamelCase.
    /// `DELIVERY_STAGE_HEADED_TO_PICKUP` in `DeliveryStage` -> `headedToPickup`.
    public static func enumCaseName(_ valueName: String, enumName: String) -> String {
        let prefix = upperSnake(enumName) + "_"
        var stripped = valueName
        if valueName.hasPrefix(prefix) {
            let rest = String(valueName.dropFirst(prefix.count))
            if let first = rest.first, !first.isNumber { stripped = rest }
        }
        var name = lowerCamel(stripped)
        if name == "unrecognized" || name == "rawValue" || name == "protoName" { name += "_" }
        return name
    }

    /// `DeliveryStage` -> `DELIVERY_STAGE`.
    public static func upperSnake(_ name: String) -> String {
        // A word starts at an upper case letter that follows a lower case letter or digit, or
        // that ends an acronym (`HTTPRule` -> `HTTP_RULE`).
        let characters = Array(name)
        var result = ""
        for (index, character) in characters.enumerated() {
            if index > 0, character.isUppercase {
                let previous = characters[index - 1]
                let next = index + 1 < characters.count ? characters[index + 1] : nil
                if previous.isLowercase || previous.isNumber || (previous.isUppercase && next?.isLowercase == true) {
                    result += "_"
                }
            }
            result += character.uppercased()
        }
        return result
    }

    static let reservedTypeNames: Set<String> = [
        "Any", "Type", "Protocol", "Self", "Sendable", "Equatable", "Hashable", "Error", "Never",
        "Optional", "Array", "Dictionary", "Int", "Bool", "String", "Double", "Float",
        "Message", "Enum", "Box", "UnknownFields",
    ]

    static let reservedMemberNames: Set<String> = [
        "unknownFields", "hashValue", "debugDescription", "description", "self", "Type", "Protocol",
    ]

    static let swiftKeywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
        "init", "inout", "internal", "let", "open", "operator", "private", "precedencegroup",
        "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
        "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough", "for",
        "guard", "if", "in", "repeat", "return", "throw", "switch", "where", "while", "as", "false",
        "is", "nil", "super", "throws", "true", "try", "_", "Any", "some", "any", "package",
    ]
}
