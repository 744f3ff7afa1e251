/// A binary protobuf input that could not be decoded.
///
/// The `code` says what kind of problem it was; `description` says where, in words a person can
/// act on (`field 3 (packageInfo) of fabrikam...DeliveryRequest: length 200 runs past the end`).
public struct ProtobufDecodingError: Error, Hashable, CustomStringConvertible {
    /// What went wrong. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The input ended in the middle of a field.
        public static let truncated = Code("truncated")
        /// A field's wire type is not the one its declaration requires, or is not a wire type.
        public static let wrongWireType = Code("wrong wire type")
        /// A length or varint is malformed or points past the end.
        public static let malformed = Code("malformed")
        /// A string field holds bytes that are not UTF-8.
        public static let invalidUTF8 = Code("invalid UTF-8")
        /// The input is larger than the configured limit.
        public static let tooLarge = Code("too large")
        /// Nesting deeper than the configured limit.
        public static let tooDeep = Code("too deep")
        /// A string field holds U+0000, which protobuf-c's NUL-terminated strings cannot carry.
        public static let nulCharacter = Code("U+0000 in a string")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// A message that cannot be encoded in the binary format. It is refused whole rather than
/// written wrong: protobuf-c stores strings NUL-terminated, so a string field holding U+0000
/// would otherwise be sent cut short at that character.
public struct ProtobufEncodingError: Error, Hashable, CustomStringConvertible {
    /// What went wrong. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A string field holds U+0000.
        public static let nulCharacter = Code("U+0000 in a string")
    }

    public let code: Code
    /// Names the field (`fabrikam.dronedelivery.common.v1.PackageInfo.package_id contains U+0000 ...`).
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// A JSON input that could not be mapped onto a message.
///
/// The description starts with the path of the offending field, as it appeared in the input:
/// `packageInfo.weight: expected a number, got "heavy"`.
public struct JSONDecodingError: Error, Hashable, CustomStringConvertible {
    /// Path components from the outermost field inward (`["packageInfo", "weight"]`, `["tags[2]"]`).
    public private(set) var path: [String] = []
    public let reason: String

    public init(_ reason: String) { self.reason = reason }

    /// The same error, one level further out.
    public func under(_ component: String) -> JSONDecodingError {
        var copy = self
        copy.path.insert(component, at: 0)
        return copy
    }

    public var description: String {
        path.isEmpty ? reason : joinedPath + ": " + reason
    }

    /// `packageInfo.tags[2]`.
    public var joinedPath: String {
        var text = ""
        for component in path {
            if !text.isEmpty && !component.hasPrefix("[") { text += "." }
            text += component
        }
        return text
    }
}
