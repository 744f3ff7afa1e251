#if canImport(Glibc)
import Glibc
#endif
internal import CProtobufC

/// Scratch memory for one encode or decode: protobuf-c structs, strings and arrays are bump-allocated
/// from it and released together when the operation ends, on every path.
///
/// Generated code receives an arena while it builds a message's C struct; it never owns one.
/// The first block lives on the caller's stack (see `withProtobufCArena`), so small messages
/// cost no heap allocation at all for the C side.
public struct ProtobufCArena {
    /// `CProtobufC_Arena *`.
    let raw: UnsafeMutablePointer<CProtobufC_Arena>

    init(_ raw: UnsafeMutablePointer<CProtobufC_Arena>) { self.raw = raw }

    /// `ProtobufCAllocator *` for protobuf_c_message_unpack.
    var allocator: UnsafeMutablePointer<ProtobufCAllocator> {
        UnsafeMutableRawPointer(raw).assumingMemoryBound(to: ProtobufCAllocator.self)
    }

    /// Allocates `byteCount` bytes aligned to 16.
    public func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer {
        guard let memory = CProtobufC_arena_alloc(raw, max(byteCount, 1)) else { outOfMemory() }
        return memory
    }

    /// A NUL-terminated copy of `string` for a protobuf-c `char *` field named `field` (its full
    /// proto name). A string holding U+0000 is noted: protobuf-c would write it only up to that
    /// character, so the encoder refuses the message (`nulField`) instead of cutting it.
    public func string(_ string: String, field: StaticString) -> UnsafeMutablePointer<CChar> {
        if string.isEmpty { return CProtobufC_empty_string() }
        var string = string
        // A string literal's bytes are static: the arena may keep pointing at them.
        let name = field.hasPointerRepresentation ? field : "a string field"
        let copy = string.withUTF8 { utf8 in
            name.utf8Start.withMemoryRebound(to: CChar.self, capacity: name.utf8CodeUnitCount) { pointer in
                CProtobufC_arena_string(raw, utf8.baseAddress, utf8.count, pointer, name.utf8CodeUnitCount)
            }
        }
        guard let copy else { outOfMemory() }
        return copy
    }

    /// The full name of the first string field built with a U+0000 in it, if any.
    var nulField: String? {
        guard let name = raw.pointee.nul_field else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: name, count: raw.pointee.nul_field_length), as: UTF8.self)
    }

    /// Throws if a string field of the message just built holds U+0000 (see `string(_:field:)`).
    func checkStrings(encoding messageName: String) throws {
        if let field = nulField {
            throw ProtobufEncodingError(.nulCharacter, "\(field) contains U+0000, which protobuf-c cannot encode (it ends strings there); "
                                        + "the \(messageName) is refused rather than sent cut short")
        }
    }

    /// Limits what a decode may allocate (protobuf-c's structs, strings and arrays).
    func limit(to bytes: Int) { raw.pointee.limit = bytes }

    /// Whether an allocation failed because of `limit(to:)`.
    var wentOverLimit: Bool { raw.pointee.over_limit != 0 }

    /// A copy of `bytes` for a protobuf-c bytes field (nil when empty).
    public func bytes(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8>? {
        if bytes.isEmpty { return nil }
        return bytes.withUnsafeBytes { copy($0).assumingMemoryBound(to: UInt8.self) }
    }

    /// A copy of raw bytes (for repeated scalar arrays, whose Swift and C layouts agree).
    public func copy(_ bytes: UnsafeRawBufferPointer) -> UnsafeMutableRawPointer {
        let memory = allocate(bytes.count)
        if let base = bytes.baseAddress, bytes.count > 0 { memory.copyMemory(from: base, byteCount: bytes.count) }
        return memory
    }

    /// Attaches `fields` to the `ProtobufCMessage` at `message`, for protobuf-c to re-emit.
    public func setUnknownFields(_ fields: UnknownFields, adding extra: [UnknownFields.Field] = [], on message: UnsafeMutableRawPointer) {
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self)
        let all = extra.isEmpty ? fields.fields : fields.fields + extra
        let count = all.count
        let array = allocate(MemoryLayout<ProtobufCMessageUnknownField>.stride * count)
            .bindMemory(to: ProtobufCMessageUnknownField.self, capacity: count)
        for (index, field) in all.enumerated() {
            var entry = ProtobufCMessageUnknownField()
            entry.tag = field.number
            entry.wire_type = ProtobufCWireType(rawValue: .init(field.wireType.rawValue))
            entry.len = field.payload.count
            entry.data = bytes(field.payload)
            array[index] = entry
        }
        base.pointee.n_unknown_fields = UInt32(count)
        base.pointee.unknown_fields = array
    }

    private func outOfMemory() -> Never {
        // malloc failing is not a condition a request can recover from.
        fatalError("ProtobufKit: out of memory while building a protobuf-c message")
    }
}

/// Size of the stack block every encode/decode starts with: Swift keeps temporary allocations
/// on the stack only up to 1 KiB, and a larger block would cost a malloc on every call.
let arenaStackBlockSize = 1024

/// Runs `body` with an arena whose first block is on the stack, then releases the arena.
func withProtobufCArena<Result>(_ body: (ProtobufCArena) throws -> Result) rethrows -> Result {
    try withUnsafeTemporaryAllocation(byteCount: arenaStackBlockSize, alignment: 16) { block in
        var arena = CProtobufC_Arena()
        return try withUnsafeMutablePointer(to: &arena) { pointer in
            CProtobufC_arena_init(pointer, block.baseAddress, block.count)
            defer { CProtobufC_arena_release(pointer) }
            return try body(ProtobufCArena(pointer))
        }
    }
}

/// Reads a protobuf-c `char *` string field, checking that it is UTF-8 as proto3 requires.
public func _protobufCString(_ pointer: UnsafePointer<CChar>?, field: StaticString) throws -> String {
    guard let pointer else { return "" }
    let length = strlen(pointer)
    if length == 0 { return "" }
    let bytes = UnsafeRawBufferPointer(start: pointer, count: length).bindMemory(to: UInt8.self)
    guard let string = String(validating: bytes, as: UTF8.self) else {
        throw ProtobufDecodingError(.invalidUTF8, "field \(field) is not valid UTF-8")
    }
    return string
}

/// Reads a protobuf-c bytes field.
public func _protobufCBytes(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    guard count > 0, let data else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: count))
}
