import NIOCore

/// Reads the 9-byte frame headers of the inbound byte stream before nghttp2 does, for two things
/// nghttp2 1.52 cannot do by itself:
/// - report CONTINUATION frames (its callbacks never fire for them), so a header block spread
///   over endless CONTINUATION frames is caught early;
/// - remove one SETTINGS ACK: the server advertises SETTINGS_MAX_CONCURRENT_STREAMS in a SETTINGS
///   frame of its own (see `HTTP2Connection`), because nghttp2 turns a peer exceeding an
///   acknowledged limit into a connection error, where RFC 9113 allows, and gRPC expects,
///   REFUSED_STREAM. The peer's ACK of that frame must not reach nghttp2, which never sent it.
struct FrameScanner {
    /// Bytes of the client preface still to pass (server side; 0 on the client side).
    var prefaceRemaining: Int
    /// A frame header split across reads.
    var partialHeader: [UInt8] = []
    /// Payload bytes of the current frame still to pass.
    var payloadRemaining = 0
    var settingsAcksSeen = 0
    /// Which inbound SETTINGS ACK (counting from 1) to remove; 0 for none.
    var ackToRemove = 0

    init(isServer: Bool, ackToRemove: Int = 0) {
        prefaceRemaining = isServer ? 24 : 0
        self.ackToRemove = ackToRemove
    }

    /// Whether `partialHeader` holds bytes not yet handed on (they were withheld while copying).
    var partialWithheld = false

    /// Whether this read must be copied: while a frame may still need removing, or to hand on a
    /// withheld partial header. Otherwise bytes pass through untouched, partial headers included,
    /// so no byte is ever handed on twice.
    var filtering: Bool { settingsAcksSeen < ackToRemove || partialWithheld }

    /// The header-frame events in `buffer`, and the bytes to hand to nghttp2.
    mutating func process(_ buffer: ByteBuffer) -> (events: [HTTP2Session.Event], output: ByteBuffer) {
        let copying = filtering
        var events: [HTTP2Session.Event] = []
        var output = copying ? ByteBufferAllocator().buffer(capacity: buffer.readableBytes) : ByteBuffer()
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            func pass(_ count: Int) {
                if copying { output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[index..<index + count])) }
                index += count
            }
            if prefaceRemaining > 0 {
                let count = min(prefaceRemaining, bytes.count)
                prefaceRemaining -= count
                pass(count)
            }
            while index < bytes.count {
                if payloadRemaining > 0 {
                    let count = min(payloadRemaining, bytes.count - index)
                    payloadRemaining -= count
                    pass(count)
                    continue
                }
                let take = min(9 - partialHeader.count, bytes.count - index)
                partialHeader.append(contentsOf: bytes[index..<index + take])
                index += take
                guard partialHeader.count == 9 else { break }
                let length = Int(partialHeader[0]) << 16 | Int(partialHeader[1]) << 8 | Int(partialHeader[2])
                let type = partialHeader[3]
                let flags = partialHeader[4]
                let streamID = Int32(bitPattern: UInt32(partialHeader[5]) << 24 | UInt32(partialHeader[6]) << 16
                    | UInt32(partialHeader[7]) << 8 | UInt32(partialHeader[8])) & 0x7fff_ffff
                var keep = true
                if type == 0x1 || type == 0x9 {  // HEADERS, CONTINUATION
                    events.append(.headerFrame(streamID: streamID, length: length, isContinuation: type == 0x9))
                } else if type == 0x4 && flags & 0x1 != 0 {  // SETTINGS ACK
                    settingsAcksSeen += 1
                    keep = settingsAcksSeen != ackToRemove
                }
                if copying && keep { output.writeBytes(partialHeader) }
                partialHeader.removeAll(keepingCapacity: true)
                payloadRemaining = length
            }
        }
        partialWithheld = copying && !partialHeader.isEmpty
        return (events, copying ? output : buffer)
    }
}
