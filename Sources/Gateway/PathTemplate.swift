#if canImport(Glibc)
import Glibc
#endif

/// A `google.api.http` path template (google/api/http.proto):
///
///     Template = "/" Segments [ ":" Verb ]
///     Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"
///
/// `{field}` is `{field=*}`; `**` matches the rest of the path, slashes included.
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Sendable, Hashable {
        case literal(String)
        case single      // *
        case rest        // **
    }

    /// A variable: the field path it binds and the segment range it spans.
    struct Variable: Sendable, Hashable {
        var fieldPath: [String]
        var start: Int
        var end: Int  // exclusive
        /// The field path joined with dots (the key of the bound value).
        var name: String

        init(fieldPath: [String], start: Int, end: Int) {
            self.fieldPath = fieldPath
            self.start = start
            self.end = end
            self.name = fieldPath.joined(separator: ".")
        }
    }

    let segments: [Segment]
    let variables: [Variable]
    let verb: String?
    public let description: String

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ text: String) throws {
        (segments, variables, verb) = try Self.parse(text)
        description = text
    }

    private static func parse(_ text: String) throws -> ([Segment], [Variable], String?) {
        func failure(_ problem: String) -> ParseError { ParseError(description: "path template \"\(text)\": \(problem)") }
        guard text.hasPrefix("/") else { throw failure("must start with /") }
        var body = Substring(text.dropFirst())
        // The verb is a ':' after the last '/', outside braces.
        var verb: String?
        var depth = 0
        var lastColon: Substring.Index?
        var lastSlash: Substring.Index?
        for index in body.indices {
            switch body[index] {
            case "{": depth += 1
            case "}": depth -= 1
            case "/" where depth == 0: lastSlash = index
            case ":" where depth == 0: lastColon = index
            default: break
            }
        }
        if let colon = lastColon, lastSlash.map({ colon > $0 }) ?? true {
            verb = String(body[body.index(after: colon)...])
            body = body[..<colon]
        }
        var segments: [Segment] = []
        var variables: [Variable] = []
        var rest = body
        func parseSegment(_ piece: Substring) throws -> Segment {
            switch piece {
            case "*": return .single
            case "**": return .rest
            case "": throw failure("empty segment")
            default: return .literal(String(piece))
            }
        }
        while !rest.isEmpty {
            if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else { throw failure("unclosed {") }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                let parts = inside.split(separator: "=", maxSplits: 1)
                guard let name = parts.first, !name.isEmpty else { throw failure("empty variable") }
                let fieldPath = name.split(separator: ".").map(String.init)
                let start = segments.count
                if parts.count == 2 {
                    for piece in parts[1].split(separator: "/", omittingEmptySubsequences: false) { segments.append(try parseSegment(piece)) }
                } else {
                    segments.append(.single)
                }
                variables.append(Variable(fieldPath: fieldPath, start: start, end: segments.count))
                rest = rest[rest.index(after: close)...]
            } else {
                let end = rest.firstIndex(of: "/") ?? rest.endIndex
                segments.append(try parseSegment(rest[..<end]))
                rest = rest[end...]
            }
            if rest.first == "/" {
                rest = rest.dropFirst()
                if rest.isEmpty { throw failure("trailing /") }
            }
        }
        if let restIndex = segments.firstIndex(of: .rest), restIndex != segments.count - 1 { throw failure("** must be the last segment") }
        return (segments, variables, verb)
    }

    /// The bound variables (field path joined with dots, to the percent-decoded value) if the
    /// path matches; `path` is without the query string.
    public func match(_ path: String) -> [String: String]? {
        match(RequestPath(path))
    }

    /// Matches a path split once for every template (the gateway tries many per request).
    /// Nothing is allocated until the path is known to match: `**` can only be last, so
    /// template segment i faces path segment i.
    func match(_ path: RequestPath) -> [String: String]? {
        if case .matched(let bound) = matchResult(path) { return bound }
        return nil
    }

    /// What matching a path found: no match; a match with its bound variables; or a path of
    /// this template's shape whose value for `field` does not decode (a malformed %XX escape,
    /// or bytes that are not UTF-8), which the gateway answers with 400 naming the field
    /// rather than 404.
    enum Match {
        case noMatch
        case matched([String: String])
        case undecodable(field: String, raw: String)
    }

    func matchResult(_ path: RequestPath) -> Match {
        guard path.isValid else { return .noMatch }
        let parts: ArraySlice<Substring>
        if let verb {
            guard let asked = path.verb, sameBytes(asked, verb) else { return .noMatch }
            parts = path.partsWithoutVerb
        } else {
            parts = path.parts
        }
        let endsWithRest = segments.last == .rest
        if endsWithRest { if parts.count < segments.count - 1 { return .noMatch } } else if parts.count != segments.count { return .noMatch }
        for (offset, segment) in segments.enumerated() {
            switch segment {
            case .literal(let literal):
                // Bytes, not String ==: paths are compared as sent (no Unicode normalization).
                guard sameBytes(parts[parts.startIndex + offset], literal) else { return .noMatch }
            case .single:
                guard !parts[parts.startIndex + offset].isEmpty else { return .noMatch }
            case .rest:
                break
            }
        }
        var bound: [String: String] = [:]
        bound.reserveCapacity(variables.count)
        for variable in variables {
            let from = parts.startIndex + variable.start
            let to = variable.end == segments.count && endsWithRest ? parts.endIndex : parts.startIndex + variable.end
            // Single-segment variables decode every escape; multi-segment ones keep %2F (RFC 6570 reserved expansion).
            let single = variable.end - variable.start == 1 && segments[variable.start] == .single
            let raw = to - from == 1 ? String(parts[from]) : parts[from..<to].joined(separator: "/")
            guard let value = percentDecode(raw, keepSlashEscapes: !single) else {
                return .undecodable(field: variable.fieldPath.joined(separator: "."), raw: raw)
            }
            bound[variable.name] = value
        }
        return .matched(bound)
    }

    /// Field paths this template binds.
    public var boundFields: [String] { variables.map { $0.fieldPath.joined(separator: ".") } }

    /// The template as an OpenAPI path, and its parameters in order: a `{field}` variable
    /// becomes `{name}`, named by the field's own name (the last part of its path), so two
    /// bindings of one resource, `/v1/packages/{package_id}` and `/v1/packages/{package.package_id}`,
    /// are one OpenAPI path (OpenAPI forbids two templates of one path). A variable with its
    /// own segments (`{name=accounts/*}`) keeps their literals and names its wildcard after the
    /// field. The verb is kept.
    public var openAPIPath: String { openAPIPathAndParameters.path }

    /// One path parameter of `openAPIPath`: its name and the field path it fills; `whole` when
    /// the parameter is the field's whole value (a plain `{field}`), not one wildcard of it.
    public struct OpenAPIParameter: Sendable, Hashable {
        public var name: String
        public var fieldPath: String
        public var whole: Bool
    }

    public var openAPIPathAndParameters: (path: String, parameters: [OpenAPIParameter]) {
        var out = ""
        var parameters: [OpenAPIParameter] = []
        var index = 0
        while index < segments.count {
            if let variable = variables.first(where: { $0.start == index }) {
                let base = variable.fieldPath.last ?? variable.name
                let wildcards = segments[variable.start..<variable.end].filter { $0 == .single || $0 == .rest }.count
                var number = 0
                for segment in segments[variable.start..<variable.end] {
                    out += "/"
                    switch segment {
                    case .literal(let literal): out += literal
                    case .single, .rest:
                        number += 1
                        let name = wildcards > 1 ? "\(base)_\(number)" : base
                        out += "{\(name)}"
                        let whole = variable.end - variable.start == 1 && segment == .single
                        parameters.append(OpenAPIParameter(name: name, fieldPath: variable.name, whole: whole))
                    }
                }
                index = variable.end
                continue
            }
            out += "/"
            switch segments[index] {
            case .literal(let literal): out += literal
            case .single: out += "*"
            case .rest: out += "**"
            }
            index += 1
        }
        if let verb { out += ":" + verb }
        return (out, parameters)
    }
}

/// Whether a path segment is exactly `literal`, byte for byte (paths are compared as sent, with
/// no Unicode normalization; and a memcmp is what this hot comparison should cost).
func sameBytes(_ segment: Substring, _ literal: String) -> Bool {
    guard segment.utf8.count == literal.utf8.count else { return false }
    let compared = segment.utf8.withContiguousStorageIfAvailable { a in
        literal.utf8.withContiguousStorageIfAvailable { b in
            a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
        }
    }
    return (compared ?? nil) ?? segment.utf8.elementsEqual(literal.utf8)
}

/// Decodes %XX escapes; nil for a malformed escape or invalid UTF-8.
func percentDecode(_ text: String, keepSlashEscapes: Bool = false) -> String? {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8)[...]
    while let byte = iterator.popFirst() {
        if byte == UInt8(ascii: "%") {
            guard iterator.count >= 2, let high = hexValue(iterator.popFirst()!), let low = hexValue(iterator.popFirst()!) else { return nil }
            let decoded = high << 4 | low
            if keepSlashEscapes && decoded == UInt8(ascii: "/") {
                bytes += Array("%2F".utf8)
            } else {
                bytes.append(decoded)
            }
        } else {
            bytes.append(byte)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// A request path split into segments once, with its `:verb` split off the last segment.
struct RequestPath {
    let isValid: Bool
    let parts: ArraySlice<Substring>
    /// The last segment's text after its last ':' (nil without one).
    let verb: Substring?
    let partsWithoutVerb: ArraySlice<Substring>

    init(_ path: String) {
        guard path.first == "/" else {
            isValid = false
            parts = []
            verb = nil
            partsWithoutVerb = []
            return
        }
        isValid = true
        // Split on bytes: '/' and ':' are ASCII, and never part of a longer UTF-8 sequence.
        var split: [Substring] = []
        split.reserveCapacity(8)
        let utf8 = path.utf8
        var start = utf8.index(after: utf8.startIndex)
        if start < utf8.endIndex {
            var index = start
            while index < utf8.endIndex {
                if utf8[index] == UInt8(ascii: "/") {
                    split.append(path[start..<index])
                    start = utf8.index(after: index)
                }
                index = utf8.index(after: index)
            }
            split.append(path[start..<utf8.endIndex])
        }
        parts = split[...]
        if let last = split.last, let colon = last.utf8.lastIndex(of: UInt8(ascii: ":")) {
            verb = last[last.utf8.index(after: colon)...]
            split[split.count - 1] = last[..<colon]
            partsWithoutVerb = split[...]
        } else {
            verb = nil
            partsWithoutVerb = parts
        }
    }
}
