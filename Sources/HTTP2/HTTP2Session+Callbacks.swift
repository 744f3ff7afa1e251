internal import CNGHTTP2
import NIOCore

// nghttp2's callbacks: C function pointers that find the session through `user_data`. They only
// record events and copy bytes; they never call back into nghttp2's send or receive, never print,
// and report failure with nghttp2's own error codes.

extension HTTP2Session {
    static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
    }

    static func installCallbacks(_ callbacks: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            let session = HTTP2Session.from(userData)
            session.incomingBlock = IncomingHeaderBlock(streamID: frame!.pointee.hd.stream_id)
            if session.role == .server && frame!.pointee.headers.cat == NGHTTP2_HCAT_REQUEST { session.activeStreams.insert(frame!.pointee.hd.stream_id) }
            return 0
        }

        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            let session = HTTP2Session.from(userData)
            let streamID = frame!.pointee.hd.stream_id
            // The decoded size counts as RFC 9113 defines it (name + value + 32 per field). Past the
            // advertised SETTINGS_MAX_HEADER_LIST_SIZE the rest is still decoded (HPACK's table must
            // stay in step with the peer's) but not kept, and the block becomes a stream error.
            if session.incomingBlock.streamID != streamID { session.incomingBlock = IncomingHeaderBlock(streamID: streamID) }
            session.incomingBlock.size += nameLength + valueLength + 32
            if session.incomingBlock.tooLarge { return 0 }
            if session.incomingBlock.size > Int(session.settings.maxHeaderListSize) {
                session.incomingBlock.tooLarge = true
                session.incomingBlock.fields = []
                return 0
            }
            session.incomingBlock.fields.append(HeaderField(
                HeaderField.string(UnsafeBufferPointer(start: name, count: nameLength)),
                HeaderField.string(UnsafeBufferPointer(start: value, count: valueLength))))
            return 0
        }

        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let session = HTTP2Session.from(userData)
            let header = frame!.pointee.hd
            let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(header.type) {
            case NGHTTP2_HEADERS.rawValue:
                var fields: [HeaderField] = []
                if session.incomingBlock.streamID == header.stream_id {
                    if session.incomingBlock.tooLarge {
                        let size = session.incomingBlock.size
                        session.incomingBlock = IncomingHeaderBlock(streamID: 0)
                        session.events.append(.headerListTooLarge(streamID: header.stream_id, size: size, endStream: endStream))
                        return 0
                    }
                    swap(&fields, &session.incomingBlock.fields)
                    session.incomingBlock = IncomingHeaderBlock(streamID: 0)
                }
                session.events.append(.headers(streamID: header.stream_id, fields: fields, endStream: endStream))
            case NGHTTP2_DATA.rawValue:
                if endStream { session.events.append(.endStream(streamID: header.stream_id)) }
            case NGHTTP2_GOAWAY.rawValue:
                let goAway = frame!.pointee.goaway
                // The debug data says why (gRPC clients act on "too_many_pings"); short, kept as text.
                let debugData = goAway.opaque_data.map { String(decoding: UnsafeBufferPointer(start: $0, count: min(goAway.opaque_data_len, 256)), as: UTF8.self) } ?? ""
                session.events.append(.goAway(lastStreamID: goAway.last_stream_id, errorCode: goAway.error_code, debugData: debugData))
            case NGHTTP2_PING.rawValue:
                let isAck = header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0
                session.events.append(isAck ? .pingAck : .ping)
            case NGHTTP2_SETTINGS.rawValue:
                if header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { session.events.append(.settings) }
            case NGHTTP2_RST_STREAM.rawValue:
                session.events.append(.resetByPeer(streamID: header.stream_id))
            default:
                break
            }
            return 0
        }

        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            let session = HTTP2Session.from(userData)
            session.receivedDataBytes += length
            session.events.append(.data(streamID: streamID, bytes: session.payload(data!, length)))
            return 0
        }

        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            let session = HTTP2Session.from(userData)
            session.outbound[streamID] = nil
            session.activeStreams.remove(streamID)
            if session.incomingBlock.streamID == streamID { session.incomingBlock = IncomingHeaderBlock(streamID: 0) }
            session.events.append(.streamClosed(streamID: streamID, errorCode: errorCode))
            return 0
        }
    }

    /// A DATA payload as a buffer: a slice of the input when it lies inside it (always, with
    /// nghttp2's in-place parsing), else a copy.
    func payload(_ data: UnsafePointer<UInt8>, _ length: Int) -> ByteBuffer {
        if let (buffer, bytes) = input, let base = bytes.baseAddress {
            let offset = UnsafeRawPointer(data) - base
            if offset >= 0 && offset + length <= bytes.count,
               let slice = buffer.getSlice(at: buffer.readerIndex + offset, length: length) {
                return slice
            }
        }
        var copy = ByteBufferAllocator().buffer(capacity: length)
        copy.writeBytes(UnsafeRawBufferPointer(start: data, count: length))
        return copy
    }

    /// The data provider every outbound body uses: it reads from `outbound[streamID]`.
    static func dataProvider() -> nghttp2_data_provider {
        var provider = nghttp2_data_provider()
        provider.read_callback = { session, streamID, buffer, length, flags, _, userData in
            let owner = HTTP2Session.from(userData)
            guard let stream = owner.outbound[streamID] else {
                return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
            }
            let count = min(length, stream.pendingBytes)
            if count > 0 {
                stream.pending!.withUnsafeReadableBytes { bytes in
                    buffer!.update(from: bytes.bindMemory(to: UInt8.self).baseAddress!, count: count)
                }
                stream.pending!.moveReaderIndex(forwardBy: count)
                // Bytes moved: a stop behind the window after this is a new wait.
                stream.stalled = false
                if stream.pendingBytes > 0 && owner.onFlowControlStall != nil { owner.queueStallCheck(stream, streamID) }
            }
            if stream.pendingBytes == 0 {
                stream.pending = nil
                if stream.endStream {
                    flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                    if let trailers = stream.trailers {
                        flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                        // nghttp2 allows submitting trailers from inside this callback.
                        let result = (try? owner.withNameValues(trailers) { nva in
                            nghttp2_submit_trailer(session, streamID, nva.baseAddress, nva.count)
                        }) ?? -1
                        if result != 0 { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
                    }
                } else if count == 0 {
                    stream.deferred = true
                    return Int(NGHTTP2_ERR_DEFERRED.rawValue)
                }
            }
            return count
        }
        return provider
    }
}
