internal import CProtobufC

/// Limits applied while decoding binary input.
public struct BinaryDecodingOptions: Sendable, Hashable {
    /// Inputs longer than this are rejected before any parsing (gRPC's default limit is 4 MiB).
    public var maxSize: Int = 4 * 1024 * 1024
    /// Memory one decode may take on the C side (protobuf-c's structs, strings and arrays);
    /// input that needs more is refused (`.tooLarge`). Small inputs can unpack into far more
    /// memory than they take (an empty sub-message is 2 bytes on the wire and a whole struct in
    /// memory), so this, not `maxSize`, is what bounds a decode's memory.
    public var maxMemory: Int = 64 * 1024 * 1024

    public init() {}

    /// `.defaults { $0.maxSize = 1 << 20 }`
    public static func defaults(_ configure: (inout Self) -> Void) -> Self {
        var options = Self()
        configure(&options)
        return options
    }
}

/// Nesting of messages deeper than this is refused when decoding (the limit of Google's runtimes).
let maxNestingDepth = 100

extension Message {
    /// The message in the protobuf binary wire format (encoded by protobuf-c).
    ///
    /// - Throws: `ProtobufEncodingError` (`.nulCharacter`) when a string field holds U+0000,
    ///   which protobuf-c cannot encode; the error names the field.
    public func serializedBytes() throws -> [UInt8] {
        try withProtobufCArena { arena in
            let message = _buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self)
            try arena.checkStrings(encoding: Self.protoMessageName)
            let size = protobuf_c_message_get_packed_size(message)
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                count = size == 0 ? 0 : protobuf_c_message_pack(message, buffer.baseAddress)
            }
        }
    }

    /// Encodes the message into memory the caller provides, with no intermediate array: `body`
    /// gets the encoded size and a function that writes exactly that many bytes at a pointer
    /// (a transport uses it to write the message straight after its own length prefix).
    /// Throws before calling `body` when the message cannot be encoded (see `serializedBytes()`).
    public func withSerialization<Result>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) throws -> Result) throws -> Result {
        try withProtobufCArena { arena in
            let message = _buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self)
            try arena.checkStrings(encoding: Self.protoMessageName)
            let size = protobuf_c_message_get_packed_size(message)
            return try body(size) { destination in
                if size > 0 { _ = protobuf_c_message_pack(message, destination.assumingMemoryBound(to: UInt8.self)) }
            }
        }
    }

    /// Number of bytes `serializedBytes()` produces (for a message it would refuse, the size of
    /// what protobuf-c would have written).
    public var serializedSize: Int {
        withProtobufCArena { arena in
            protobuf_c_message_get_packed_size(_buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    /// Decodes a message from the protobuf binary wire format.
    ///
    /// - Throws: `ProtobufDecodingError` naming what is wrong (truncated input, a wrong wire type,
    ///   a bad length, invalid UTF-8 or U+0000 in a string field, messages nested more than 100
    ///   deep, input over `options.maxSize`, or a decode needing more than `options.maxMemory`).
    public init(serializedBytes bytes: some Collection<UInt8>, options: BinaryDecodingOptions = BinaryDecodingOptions()) throws {
        if let result = try bytes.withContiguousStorageIfAvailable({ try Self(decoding: UnsafeRawBufferPointer($0), options: options) }) {
            self = result
        } else {
            let copy = Array(bytes)
            self = try copy.withUnsafeBytes { try Self(decoding: $0, options: options) }
        }
    }

    /// Decodes a message from raw memory (for example a slice of a network buffer).
    public init(decoding buffer: UnsafeRawBufferPointer, options: BinaryDecodingOptions = BinaryDecodingOptions()) throws {
        guard buffer.count <= options.maxSize else {
            throw ProtobufDecodingError(.tooLarge, "\(Self.protoMessageName): \(buffer.count) bytes is over the limit of \(options.maxSize)")
        }
        let descriptor = Self._protobufCDescriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
        let bytes = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        // Before protobuf-c sees the input: its unpack recurses on the C stack without a limit,
        // and it would cut a string at a U+0000. Types that can nest or hold a string (directly
        // or through their fields) are scanned in C; the Swift walker explains any refusal.
        if Self._needsWireScan, let bytes,
           CProtobufC_scan(descriptor, bytes, buffer.count, UInt32(maxNestingDepth)) != Int32(CPROTOBUFC_SCAN_OK) {
            throw WireDiagnostics.explain(buffer, descriptor: UnsafeRawPointer(descriptor))
        }
        self = try withProtobufCArena { arena in
            arena.limit(to: options.maxMemory)
            guard let message = protobuf_c_message_unpack(descriptor, arena.allocator, buffer.count, bytes) else {
                if arena.wentOverLimit {
                    throw ProtobufDecodingError(.tooLarge, "\(Self.protoMessageName): decoding these \(buffer.count) bytes needs more than "
                                                + "\(options.maxMemory) bytes of memory (BinaryDecodingOptions.maxMemory)")
                }
                // protobuf-c reports no reason; find one by walking the input against the descriptor.
                throw WireDiagnostics.explain(buffer, descriptor: UnsafeRawPointer(descriptor))
            }
            return try Self(_protobufC: UnsafeRawPointer(message))
        }
    }
}
