import ProtobufKit

/// Builds request documents: a `-d` document (or an empty one) with the field flags laid over
/// it, and turns the decoder's complaints back into the flag or `-d` path that caused them.
public struct RequestAssembler: Sendable {
    /// Every flag of the command, given or not (oneof siblings are found among them).
    let flags: [FieldFlag]
    let files: FileReader

    public init(flags: [FieldFlag], files: FileReader = FileReader()) throws {
        self.flags = flags
        self.files = files
        // Two members of one oneof: there is no telling which the user meant.
        var chosen: [String: FieldFlag] = [:]
        for flag in flags where flag.isGiven {
            guard let oneof = flag.oneof else { continue }
            let member = Self.member(of: flag)
            if let other = chosen[oneof], Self.member(of: other) != member {
                throw UsageError("--\(other.name) and --\(flag.name) set different members of oneof \(oneof.split(separator: ".").last ?? ""); give one")
            }
            chosen[oneof] = flag
        }
    }

    /// How deep a flag's oneof sits: its member is the path component at that depth.
    static func oneofDepth(_ flag: FieldFlag) -> Int { (flag.oneof?.split(separator: ".").count ?? 1) - 1 }
    static func member(of flag: FieldFlag) -> String { flag.jsonPath[min(oneofDepth(flag), flag.jsonPath.count - 1)] }

    /// `document` (an object, or nil for none) with every given flag set in it.
    public func assemble(_ document: JSONValue?, source: String) throws -> JSONValue {
        var root: JSONValue
        switch document {
        case nil: root = .object([])
        case .object?: root = document!
        case let other?: throw UsageError("\(source): expected a JSON object for the request, got \(Self.describe(other))")
        }
        for flag in flags where flag.isGiven {
            let value = try flag.jsonValue(files: files)
            var siblings: [(json: String, proto: String)] = []
            if let oneof = flag.oneof {
                let depth = Self.oneofDepth(flag)
                for other in flags where other.oneof == oneof && Self.member(of: other) != Self.member(of: flag) {
                    siblings.append((other.jsonPath[depth], other.protoPath[depth]))
                }
            }
            Self.set(value, at: flag.jsonPath[...], proto: flag.protoPath[...], in: &root,
                     clearing: siblings, clearAtDepth: flag.oneof.map { _ in Self.oneofDepth(flag) })
        }
        return root
    }

    /// Sets `value` at the path, replacing a member named by either the JSON or the proto name,
    /// and creating objects on the way. At `clearAtDepth`, the oneof's other members go.
    static func set(_ value: JSONValue, at path: ArraySlice<String>, proto: ArraySlice<String>, in object: inout JSONValue,
                    clearing siblings: [(json: String, proto: String)], clearAtDepth: Int?, depth: Int = 0) {
        guard let key = path.first, let protoKey = proto.first else {
            object = value
            return
        }
        var members: [JSONMember] = []
        if case .object(let existing) = object { members = existing }
        if clearAtDepth == depth {
            members.removeAll { member in siblings.contains { $0.json == member.key || $0.proto == member.key } }
        }
        let index = members.firstIndex { $0.key == key || $0.key == protoKey }
        if path.count == 1 {
            if let index { members.remove(at: index) }
            members.append(JSONMember(key, value))
        } else {
            var child: JSONValue = index.map { members[$0].value } ?? .object([])
            set(value, at: path.dropFirst(), proto: proto.dropFirst(), in: &child, clearing: siblings, clearAtDepth: clearAtDepth, depth: depth + 1)
            if let index { members.remove(at: index) }
            members.append(JSONMember(key, child))
        }
        object = .object(members)
    }

    /// The decoder's error, said in terms of what the user typed: the flag whose field it is,
    /// or the path inside `-d`.
    public func explain(_ error: JSONDecodingError, source: String) -> UsageError {
        let path = error.path.map { component -> String in
            // `tags[2]` -> `tags`: the flag is named after the field.
            if let bracket = component.firstIndex(of: "["), bracket != component.startIndex { return String(component[..<bracket]) }
            return component
        }
        let given = flags.filter(\.isGiven).sorted { $0.jsonPath.count > $1.jsonPath.count }
        for flag in given where path.count >= flag.jsonPath.count && Array(path.prefix(flag.jsonPath.count)) == flag.jsonPath {
            let rest = Array(error.path.dropFirst(flag.jsonPath.count))
            var inside = JSONDecodingError(error.reason)
            for component in rest.reversed() { inside = inside.under(component) }
            return UsageError("--\(flag.name): \(inside.description)")
        }
        return UsageError("\(source): \(error.description)")
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .array: return "an array"
        case .string: return "a string"
        case .null: return "null"
        case .bool: return "a bool"
        default: return "a number"
        }
    }
}
