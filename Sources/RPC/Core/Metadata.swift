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

    /// Appends the header fields that carry this metadata (binary values base64-encoded).
    func appendHeaderFields(to fields: inout [HeaderField]) {
        for entry in entries {
            switch entry.value {
            case .string(let text): fields.append(HeaderField(entry.name, text))
            case .binary(let bytes): fields.append(HeaderField(entry.name, Base64.encode(bytes)))
            }
        }
    }

}
