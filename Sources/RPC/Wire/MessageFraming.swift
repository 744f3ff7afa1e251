import NIOCore
import ProtobufKit

/// gRPC's length-prefixed messages: a compressed flag byte, a 4-byte big-endian length, then the
/// message. `MessageDeframer` reassembles them from DATA frames split at any boundary.
struct MessageDeframer {
    var buffer = ByteBuffer()
    /// Messages larger than this end the call with RESOURCE_EXHAUSTED.
    let maxMessageSize: Int
    /// The call's `grpc-encoding`, for messages whose compressed flag is set.
    let compression: Compression?
    /// Whether the message `next()` returned last had its compressed flag set (the sender
    /// chooses per message; tests and the interop client check it).
    private(set) var lastMessageWasCompressed = false

    init(maxMessageSize: Int, compression: Compression?) {
        self.maxMessageSize = maxMessageSize
        self.compression = compression
    }

    mutating func append(_ bytes: ByteBuffer) {
        if buffer.readableBytes == 0 { buffer = bytes } else { buffer.writeImmutableBuffer(bytes) }
    }

    /// The next complete message, if one has arrived.
    mutating func next() throws -> ByteBuffer? {
        guard buffer.readableBytes >= 5,
              let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self) else { return nil }
        guard length <= maxMessageSize else {
            throw RPCError(.resourceExhausted, "message of \(length) bytes is over the limit of \(maxMessageSize)")
        }
        guard buffer.readableBytes >= 5 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let message = buffer.readSlice(length: Int(length))!
        // Drop the emptied buffer rather than `clear()` it: the message is a slice of the same
        // storage, so clearing would allocate a fresh one for nothing.
        if buffer.readableBytes == 0 { buffer = ByteBuffer() }
        lastMessageWasCompressed = flag == 1
        switch flag {
        case 0:
            return message
        case 1:
            guard let compression else {
                throw RPCError(.internal, "compressed message received but no grpc-encoding was given")
            }
            return try compression.decompress(message, limit: maxMessageSize)
        default:
            throw RPCError(.internal, "invalid compressed flag \(flag) in a message prefix")
        }
    }

    /// Bytes of a message still incomplete (an error if the stream ends now).
    var hasPartialMessage: Bool { buffer.readableBytes > 0 }
}

/// Encodes and frames one message: uncompressed, it is encoded straight into the framed buffer
/// after its prefix. Throws RESOURCE_EXHAUSTED when it is over `maxSize`, and before anything is
/// sent when it cannot be encoded (a string holding U+0000): INVALID_ARGUMENT for a request
/// (the caller's argument is what is wrong), INTERNAL for a response.
func frameMessage<Message: ProtobufKit.Message>(_ message: Message, compression: Compression?, maxSize: Int, allocator: ByteBufferAllocator,
                                                 direction: String) throws -> ByteBuffer {
    do {
        return try encodeAndFrame(message, compression: compression, maxSize: maxSize, allocator: allocator, direction: direction)
    } catch let error as ProtobufEncodingError {
        throw RPCError(direction == "request" ? .invalidArgument : .internal, "the \(direction) cannot be encoded: \(error.message)")
    }
}

private func encodeAndFrame<Message: ProtobufKit.Message>(_ message: Message, compression: Compression?, maxSize: Int, allocator: ByteBufferAllocator,
                                                          direction: String) throws -> ByteBuffer {
    if compression != nil {
        let bytes = try message.serializedBytes()
        try checkMessageSize(bytes.count, maxSize: maxSize, direction: direction)
        return try frameMessage(bytes, compression: compression, allocator: allocator)
    }
    return try message.withSerialization { size, write in
        try checkMessageSize(size, maxSize: maxSize, direction: direction)
        return frameUncompressed(size: size, allocator: allocator) { memory in
            if size > 0 { write(memory.baseAddress!) }
        }
    }
}

/// One uncompressed message of `size` bytes, framed: the prefix, then the bytes `write` puts
/// straight into the frame (exactly `size` of them).
func frameUncompressed(size: Int, allocator: ByteBufferAllocator, _ write: (UnsafeMutableRawBufferPointer) -> Void) -> ByteBuffer {
    var framed = allocator.buffer(capacity: size + 5)
    framed.writeInteger(UInt8(0))
    framed.writeInteger(UInt32(size))
    framed.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { memory in
        write(UnsafeMutableRawBufferPointer(rebasing: memory[..<size]))
        return size
    }
    return framed
}

func checkMessageSize(_ size: Int, maxSize: Int, direction: String) throws {
    if size > maxSize {
        throw RPCError(.resourceExhausted, "\(direction) message of \(size) bytes is over the limit of \(maxSize)")
    }
}

/// Frames one message, compressing it when `compression` is given: one buffer, prefix included.
func frameMessage(_ message: [UInt8], compression: Compression?, allocator: ByteBufferAllocator) throws -> ByteBuffer {
    if let compression {
        var payload = allocator.buffer(capacity: message.count)
        payload.writeBytes(message)
        payload = try compression.compress(payload)
        var framed = allocator.buffer(capacity: payload.readableBytes + 5)
        framed.writeInteger(UInt8(1))
        framed.writeInteger(UInt32(payload.readableBytes))
        framed.writeImmutableBuffer(payload)
        return framed
    }
    var framed = allocator.buffer(capacity: message.count + 5)
    framed.writeInteger(UInt8(0))
    framed.writeInteger(UInt32(message.count))
    framed.writeBytes(message)
    return framed
}
