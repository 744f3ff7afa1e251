import HTTP2
import ProtobufKit

/// Call metadata: ordered name/value pairs sent as HTTP/2 headers or trailers.
///
/// Names are lower case. Names ending in `-bin` carry bytes, sent base64-encoded (padded on
/// output; padded and unpadded accepted on input); other values are printable ASCII.
public struct Metadata: Sendable, Hashable, Sequence {
    public enum Value: Sendable, Hashable {
        case string(String)
        case binary([UInt8])
    }

    public private(set) var entries: [(name: String, value: Value)] = []

    public init() {}

    /// Metadata with the given text entries, in order.
    public init(_ elements: [(String, String)]) {
        for (name, value) in elements { add(name, value) }
    }

    /// Room for `count` entries without growing on each `add`.
    public mutating func reserveCapacity(_ count: Int) { entries.reserveCapacity(count) }

    public mutating func add(_ name: String, _ value: String) { entries.append((Self.lowercased(name), .string(value))) }
    public mutating func add(_ name: String, binary value: [UInt8]) { entries.append((Self.lowercased(name), .binary(value))) }

    /// The name in lower case; a name that already is (the usual case) is kept as it is.
    static func lowercased(_ name: String) -> String {
        name.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ? name.lowercased() : name
    }

    /// The first text value for `name`.
    public subscript(_ name: String) -> String? {
        for entry in entries where entry.name == name {
            if case .string(let text) = entry.value { return text }
        }
        return nil
    }

    /// All binary values for `name` (a `-bin` key).
    public func binaryValues(_ name: String) -> [[UInt8]] {
        entries.compactMap { entry in
            guard entry.name == name, case .binary(let bytes) = entry.value else { return nil }
            return bytes
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(name: String, value: Value)]> { entries.makeIterator() }

    public static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.entries.count == rhs.entries.count && zip(lhs.entries, rhs.entries).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.name)
            hasher.combine(entry.value)
        }
    }

    /// Whether a header name is one the protocol itself uses (never metadata). A switch, not a
    /// Set: every received header is checked, and comparing short strings beats hashing them.
    static func isReserved(_ name: String) -> Bool {
        switch name {
        case "content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-status", "grpc-message",
             "grpc-status-details-bin", "user-agent", "content-length", "accept-encoding", "host", "connection":
            return true
        default:
            return false
        }
    }

    /// Metadata from received header fields (pseudo-headers and protocol headers skipped).
    init(fields: [(name: String, value: String)]) {
        for (name, value) in fields where !name.hasPrefix(":") && !Self.isReserved(name) {
            if name.hasSuffix("-bin") {
                if let bytes = Base64.decode(value) { entries.append((name, .binary(bytes))) }
            } else {
                entries.append((name, .string(value)))
            }
        }
    }

    /// Appends the header fields that carry this metadata (binary values base64-encoded), after
    /// checking every entry can go on the wire as gRPC metadata (`validateForSending`).
    ///
    /// - Throws: `RPCError(.internal)` naming the first header that cannot be sent; nothing is
    ///   appended then.
    func appendHeaderFields(to fields: inout [HeaderField]) throws(RPCError) {
        guard !entries.isEmpty else { return }
        try validateForSending()
        for entry in entries {
            switch entry.value {
            case .string(let text): fields.append(HeaderField(entry.name, text))
            case .binary(let bytes): fields.append(HeaderField(entry.name, Base64.encode(bytes)))
            }
        }
    }

    /// Checks that every entry can be sent, on either end (request metadata, response headers,
    /// trailers), following gRPC's PROTOCOL-HTTP2:
    /// - a name is 1 or more of `0-9 a-z - _ .` (upper case is folded by `add`); so no
    ///   pseudo-header (`:path`) and nothing a peer would reject as malformed;
    /// - a text value is printable ASCII (space to `~`), without CR, LF or other controls, and
    ///   without space at either end (HTTP/2 peers reset such a stream); bytes go in `-bin`
    ///   entries, which are base64 on the wire;
    /// - a text value under a `-bin` name, or bytes under another name, is refused;
    /// - names the runtime sets itself are refused: `content-type`, `te`, `user-agent`, the
    ///   `grpc-` headers of the protocol (`grpc-status`, `grpc-message`, `grpc-timeout`,
    ///   `grpc-encoding`, `grpc-accept-encoding`, `grpc-message-type`), and HTTP's
    ///   connection-specific headers (`connection`, `keep-alive`, `proxy-connection`,
    ///   `transfer-encoding`, `upgrade`, `host`, `content-length`). Other `grpc-` names (such as
    ///   `grpc-status-details-bin` or `grpc-retry-pushback-ms`) are gRPC's and allowed.
    ///
    /// - Throws: `RPCError(.internal)` whose message names the header and what is wrong with it.
    public func validateForSending() throws(RPCError) {
        for entry in entries {
            if let problem = Self.problem(name: entry.name, value: entry.value) {
                throw RPCError(.internal, "metadata \"\(Self.printable(entry.name))\" cannot be sent: \(problem)")
            }
        }
    }

    /// What is wrong with an entry, or nil when it can be sent.
    static func problem(name: String, value: Value) -> String? {
        // Every call sends its metadata through here: the usual answer (nothing wrong) comes
        // from one pass over the bytes; only a failing entry is looked at again to say why.
        if isSendable(name: name, value: value) { return nil }
        return describedProblem(name: name, value: value)
    }

    /// Whether an entry can be sent, by the rules `describedProblem` explains.
    private static func isSendable(name: String, value: Value) -> Bool {
        let nameIsValid = name.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard !bytes.isEmpty else { return false }
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                    continue
                default:
                    return false
                }
            }
            return true
        }
        guard nameIsValid == true, !isOwnedByRuntime(name) else { return false }
        let isBinaryName = name.utf8.count >= 4 && name.utf8.suffix(4).elementsEqual("-bin".utf8)
        switch value {
        case .binary:
            return isBinaryName
        case .string(let text):
            guard !isBinaryName else { return false }
            return text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
                if bytes.first == UInt8(ascii: " ") || bytes.last == UInt8(ascii: " ") { return false }
                for byte in bytes where byte < 0x20 || byte > 0x7e { return false }
                return true
            } == true
        }
    }

    /// What is wrong with an entry (nil when nothing is), in words for the error.
    private static func describedProblem(name: String, value: Value) -> String? {
        if name.isEmpty { return "the name is empty" }
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                continue
            default:
                return "the name may hold only 0-9, a-z, '-', '_' and '.' (found \(describe(byte)))"
            }
        }
        if isOwnedByRuntime(name) { return "the name is reserved: the gRPC runtime sets this header itself" }
        let isBinaryName = name.hasSuffix("-bin")
        switch value {
        case .binary:
            if !isBinaryName { return "a binary value needs a name ending in -bin" }
        case .string(let text):
            if isBinaryName { return "a name ending in -bin carries bytes: add it with add(_:binary:)" }
            let bytes = text.utf8
            for byte in bytes where byte < 0x20 || byte > 0x7e {
                return "the value may hold only printable ASCII (found \(describe(byte))); send bytes in a -bin entry"
            }
            if bytes.first == UInt8(ascii: " ") || bytes.last == UInt8(ascii: " ") {
                return "the value starts or ends with a space, which HTTP/2 peers reject"
            }
        }
        return nil
    }

    /// Header names the runtime writes itself on one end or the other.
    static func isOwnedByRuntime(_ name: String) -> Bool {
        // Most names (x-request-id, x-account-id, ...) are ruled out by their first byte,
        // without comparing strings.
        switch name.utf8.first ?? 0 {
        case UInt8(ascii: "c"), UInt8(ascii: "g"), UInt8(ascii: "h"), UInt8(ascii: "k"), UInt8(ascii: "p"),
             UInt8(ascii: "t"), UInt8(ascii: "u"):
            break
        default:
            return false
        }
        switch name {
        case "content-type", "te", "user-agent", "grpc-status", "grpc-message", "grpc-timeout", "grpc-encoding",
             "grpc-accept-encoding", "grpc-message-type", "connection", "keep-alive", "proxy-connection",
             "transfer-encoding", "upgrade", "host", "content-length":
            return true
        default:
            return false
        }
    }

    private static func describe(_ byte: UInt8) -> String {
        switch byte {
        case 0x0d: return "CR"
        case 0x0a: return "LF"
        case 0x20...0x7e: return "'\(Character(Unicode.Scalar(byte)))'"
        default: return "byte 0x\(String(byte, radix: 16, uppercase: true))"
        }
    }

    /// A name as it can be shown in a message (controls escaped, so a log line stays one line).
    private static func printable(_ name: String) -> String {
        String(name.unicodeScalars.flatMap { $0.value < 0x20 || $0.value == 0x7f ? Array($0.escaped(asASCII: true)) : [Character($0)] })
    }
}
