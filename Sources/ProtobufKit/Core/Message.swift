/// A protobuf message: a Swift value type generated from a .proto file.
///
/// Generated messages are `Sendable` and `Hashable` value types with one stored property per
/// field. Their binary encoding is done by protobuf-c; their JSON form is the canonical proto3
/// mapping. Members whose names start with an underscore are plumbing for generated code.
///
/// ```swift
/// var request = DeliveryRequest()
/// request.ownerId = "owner-1"
/// let bytes = try request.serializedBytes()
/// let copy = try DeliveryRequest(serializedBytes: bytes)
/// let json = try request.jsonString()
/// ```
public protocol Message: Sendable, Hashable, CustomDebugStringConvertible {
    /// An empty message: every field at its default.
    init()

    /// The fully qualified proto name, for example `fabrikam.dronedelivery.delivery.v1.Delivery`.
    static var protoMessageName: String { get }

    /// Fields the schema does not know, kept so that decoding and re-encoding loses nothing.
    var unknownFields: UnknownFields { get set }

    /// `const ProtobufCMessageDescriptor *` of the protoc-c struct for this message.
    static var _protobufCDescriptor: UnsafeRawPointer { get }

    /// Builds this message's protoc-c struct in `arena`; returns its `ProtobufCMessage *`.
    func _buildProtobufC(in arena: ProtobufCArena) -> UnsafeMutableRawPointer

    /// Reads a message from a protoc-c struct produced by `protobuf_c_message_unpack`.
    init(_protobufC pointer: UnsafeRawPointer) throws

    /// Whether decoding must scan the input before protobuf-c unpacks it: the type can nest
    /// without bound (it reaches a type that contains itself), so the depth must be bounded, or
    /// it holds a string field (directly or through its fields), which must not carry U+0000.
    static var _needsWireScan: Bool { get }

    /// Writes the message's canonical JSON value.
    func _writeJSON(to writer: inout JSONWriter) throws

    /// Reads the message from the JSON value at the scanner's position.
    init(_jsonScanner scanner: inout JSONScanner) throws

    /// Appends the field-rule violations of this message (its `buf.validate` rules and those of
    /// the messages in its fields), with field paths under `path`. See Validation.swift.
    func _collectViolations(at path: String, into violations: inout [ValidationViolation])
}

extension Message {
    public static var _needsWireScan: Bool { false }

    /// The type URL used when this message is packed into `google.protobuf.Any`.
    public static var typeURL: String { "type.googleapis.com/" + protoMessageName }

    public var debugDescription: String {
        let json = (try? jsonString()) ?? "<not representable as JSON>"
        return "\(Self.protoMessageName)(\(json))"
    }
}

/// A message whose JSON form is an object of its fields (every message but the well-known types
/// with special JSON forms). Generated code implements the two field-level requirements; the
/// object framing, unknown and repeated keys, and error paths are handled once, here.
public protocol JSONMessage: Message {
    /// Writes the set fields as `"name":value` members (the writer adds separators).
    func _writeJSONFields(to writer: inout JSONWriter) throws

    /// Reads the value of member `key`. Returns the field's index in declaration order, or nil
    /// (consuming nothing) when `key` names no field of the message.
    mutating func _mergeJSONField(_ key: String, from scanner: inout JSONScanner) throws -> Int?
}

extension JSONMessage {
    public func _writeJSON(to writer: inout JSONWriter) throws {
        writer.beginObject()
        try _writeJSONFields(to: &writer)
        writer.endObject()
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        self.init()
        let objectDepth = scanner.depth + 1
        try scanner.beginObject("an object for \(Self.protoMessageName)")
        var seen: UInt64 = 0
        var seenBeyond64: Set<Int> = []
        while let key = try scanner.nextKey() {
            do {
                guard let index = try _mergeJSONField(key, from: &scanner) else {
                    // The `@type` of an enclosing google.protobuf.Any is not a field.
                    if key == "@type" && scanner.anyTypeDepth == objectDepth {
                        try scanner.skipValue()
                        continue
                    }
                    if scanner.options.ignoreUnknownFields {
                        try scanner.skipValue()
                        continue
                    }
                    throw JSONDecodingError("unknown field (\(Self.protoMessageName) has no field named '\(key)')")
                }
                // The same field twice (under its JSON or proto name) is an error, not an overwrite.
                let repeated: Bool
                if index < 64 {
                    repeated = seen & (1 << UInt64(index)) != 0
                    seen |= 1 << UInt64(index)
                } else {
                    repeated = !seenBeyond64.insert(index).inserted
                }
                if repeated { throw JSONDecodingError("the field is given more than once") }
            } catch let error as JSONDecodingError {
                throw error.under(key)
            }
        }
    }
}

/// A generated proto3 enum: open, so values unknown to this schema version survive as
/// `.unrecognized(n)`.
public protocol Enum: Sendable, Hashable, RawRepresentable, CaseIterable where RawValue == Int32 {
    /// The default: the value numbered zero.
    init()
    init(rawValue: Int32)
    /// The proto names of the values, for the JSON mapping.
    static var protoNames: EnumNames { get }
}

extension Enum {
    /// The proto name of this value (for example `DELIVERY_STAGE_CREATED`), or nil if unknown.
    public var protoName: String? { Self.protoNames.name(for: rawValue) }
}

/// The names of an enum's values, both ways.
public struct EnumNames: Sendable {
    /// The enum's fully qualified proto name, for messages.
    public let enumName: String
    private let namesByNumber: [Int32: String]
    private let numbersByName: [String: Int32]

    /// `pairs` in declaration order; for aliases the first name of a number is the one written.
    public init(_ enumName: String, _ pairs: [(Int32, String)]) {
        self.enumName = enumName
        var byNumber: [Int32: String] = [:]
        var byName: [String: Int32] = [:]
        for (number, name) in pairs {
            if byNumber[number] == nil { byNumber[number] = name }
            byName[name] = number
        }
        namesByNumber = byNumber
        numbersByName = byName
    }

    public func name(for number: Int32) -> String? { namesByNumber[number] }
    public func number(for name: String) -> Int32? { numbersByName[name] }
}

/// An immutable heap box, so a message can hold a field of its own type (directly or through
/// other messages) and still be a value type. Equality and hashing are the value's.
public final class Box<Value: Sendable & Hashable>: Sendable, Hashable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
    public static func == (lhs: Box, rhs: Box) -> Bool { lhs === rhs || lhs.value == rhs.value }
    public func hash(into hasher: inout Hasher) { value.hash(into: &hasher) }
}
