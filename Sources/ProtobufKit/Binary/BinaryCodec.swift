internal import CProtobufC

/// Limits applied while decoding binary input.
public struct BinaryDecodingOptions: Sendable, Hashable {
    /// Inputs longer than this are rejected before any parsing (gRPC's default limit is 4 MiB).
    public var maxSize: Int = 4 * 1024 * 1024

    public init() {}

    /// `.defaults { $0.maxSize = 1 << 20 }`
    public static func defaults(_ configure: (inout Self) -> Void) -> Self {
        var options = Self()
        configure(&options)
        return options
    }
}

extension Message {
    /// The message in the protobuf binary wire format (encoded by protobuf-c).
    public func serializedBytes() -> [UInt8] {
        withProtobufCArena { arena in
            let message = _buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(message)
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                count = size == 0 ? 0 : protobuf_c_message_pack(message, buffer.baseAddress)
            }
        }
    }

    /// Encodes the message into memory the caller provides, with no intermediate array: `body`
    /// gets the encoded size and a function that writes exactly that many bytes at a pointer
    /// (a transport uses it to write the message straight after its own length prefix).
    public func withSerialization<Result>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) throws -> Result) rethrows -> Result {
        try withProtobufCArena { arena in
            let message = _buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(message)
            return try body(size) { destination in
                if size > 0 { _ = protobuf_c_message_pack(message, destination.assumingMemoryBound(to: UInt8.self)) }
            }
        }
    }

    /// Number of bytes `serializedBytes()` produces.
    public var serializedSize: Int {
        withProtobufCArena { arena in
            protobuf_c_message_get_packed_size(_buildProtobufC(in: arena).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    /// Decodes a message from the protobuf binary wire format.
    ///
    /// - Throws: `ProtobufDecodingError` naming what is wrong (truncated input, a wrong wire type,
    ///   a bad length, invalid UTF-8 in a string field, or input over `options.maxSize`).
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
        // protobuf-c recurses on the C stack without a limit; bound the nesting of types that can
        // contain themselves before handing it the input (small inputs cannot nest dangerously).
        if Self._isRecursive && buffer.count > 200 {
            try WireDiagnostics.checkDepth(buffer, descriptor: UnsafeRawPointer(descriptor))
        }
        self = try withProtobufCArena { arena in
            let bytes = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
            guard let message = protobuf_c_message_unpack(descriptor, arena.allocator, buffer.count, bytes) else {
                // protobuf-c reports no reason; find one by walking the input against the descriptor.
                throw WireDiagnostics.explain(buffer, descriptor: UnsafeRawPointer(descriptor))
            }
            return try Self(_protobufC: UnsafeRawPointer(message))
        }
    }
}
