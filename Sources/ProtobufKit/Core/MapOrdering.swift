/// Map fields are written in key order, so that encoding is deterministic: equal messages give
/// equal bytes and equal JSON (what Google's runtimes do with `deterministic` serialization:
/// integers by value, `false` before `true`, strings by their UTF-8 bytes).
public protocol ProtobufMapKey: Hashable {
    /// Whether `self` is written before `other`.
    func protobufMapKeyPrecedes(_ other: Self) -> Bool
}

extension String: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: String) -> Bool { utf8.lexicographicallyPrecedes(other.utf8) }
}

extension Bool: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: Bool) -> Bool { !self && other }
}

extension Int32: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: Int32) -> Bool { self < other }
}

extension Int64: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: Int64) -> Bool { self < other }
}

extension UInt32: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: UInt32) -> Bool { self < other }
}

extension UInt64: ProtobufMapKey {
    @inlinable public func protobufMapKeyPrecedes(_ other: UInt64) -> Bool { self < other }
}

/// The entries of a map field in the order they are written.
@inlinable
public func _orderedMapEntries<Key: ProtobufMapKey, Value>(_ map: [Key: Value]) -> [(key: Key, value: Value)] {
    if map.count < 2 { return Array(map) }
    return map.sorted { $0.key.protobufMapKeyPrecedes($1.key) }
}
