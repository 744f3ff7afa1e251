import HTTP2
import NIOCore
import ProtobufKit

/// Responses: headers (with the handler's initial metadata), messages, and the status in trailers.
extension ServerConnectionState {
    func sendMessage<Message: ProtobufKit.Message>(streamID: Int32, _ message: Message, context: ServerContext, compressed: Bool? = nil) throws {
        guard let call = calls[streamID], !call.finished else {
            throw RPCError(.cancelled, "the call has ended")
        }
        let compression = call.acceptsGzip ? messageCompression(call, context: context, compressed: compressed) : nil
        let framed = try frameMessage(message, compression: compression, maxSize: options.maxMessageSize,
                                      allocator: allocator, direction: "response")
        if !call.headersSent {
            var fields = responseHeaderFields(call)
            do {
                try context.initialMetadata.appendHeaderFields(to: &fields)
            } catch {
                // The handler's metadata cannot be sent: the call ends with that error, named.
                finishCall(streamID: streamID, status: error, initialMetadata: { Metadata() })
                throw error
            }
            guard sendHeaders(call, streamID: streamID, fields) else { throw RPCError(.internal, "could not send the response headers") }
        }
        do {
            try connection.session.sendData(streamID: streamID, framed)
        } catch {
            sendFailed(streamID: streamID, error, sending: "a response message")
            throw RPCError(.internal, "could not send a response message")
        }
        connection.flush()
    }

    /// gzip for one response message when the handler asks for it (per message, else per call)
    /// and the response headers named gzip; they do if, when the first message goes, the call
    /// or that message asked for compression (gRPC's doc/compression.md).
    func messageCompression(_ call: Call, context: ServerContext, compressed: Bool?) -> Compression? {
        let callWantsCompression = context.compressResponses
        if !call.headersSent { call.responseCompression = (compressed ?? callWantsCompression) || callWantsCompression ? .gzip : nil }
        return compressed ?? callWantsCompression ? call.responseCompression : nil
    }

    func responseHeaderFields(_ call: Call) -> [HeaderField] {
        var fields = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc"),
                      HeaderField("grpc-accept-encoding", Compression.acceptEncoding)]
        if let compression = call.responseCompression { fields.append(HeaderField("grpc-encoding", compression.name)) }
        return fields
    }

    /// Sends response headers; false (with the stream reset) if they could not be queued.
    func sendHeaders(_ call: Call, streamID: Int32, _ fields: [HeaderField]) -> Bool {
        do {
            try connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: false)
        } catch {
            sendFailed(streamID: streamID, error, sending: "the response headers")
            return false
        }
        call.headersSent = true
        return true
    }

    func finishCall(streamID: Int32, status: RPCError, context: ServerContext) {
        finishCall(streamID: streamID, status: status, initialMetadata: { context.initialMetadata })
    }

    /// The handler's task has returned with `status` (its call may be gone: reset by the client,
    /// or the connection closed). Its place among the running handlers goes to the next call.
    func handlerReturned(streamID: Int32, status: RPCError, context: ServerContext) {
        runningHandlers -= 1
        if isClosed { return }
        finishCall(streamID: streamID, status: status, initialMetadata: { context.initialMetadata })
        if !waitingToStart.isEmpty { startNextWaitingHandler() }
    }

    func finishCall(streamID: Int32, status: RPCError, initialMetadata: () -> Metadata) {
        guard let call = calls[streamID], !call.finished else { return }
        call.finished = true
        do {
            if call.headersSent {
                try connection.session.finish(streamID: streamID, trailers: statusFields(status))
            } else {
                // Trailers-Only: one header block with the status.
                var fields = [HeaderField(":status", "200"), HeaderField("content-type", "application/grpc")]
                var status = status
                do {
                    try initialMetadata().appendHeaderFields(to: &fields)
                } catch {
                    status = error
                }
                fields += statusFields(status)
                try connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
            }
        } catch {
            sendFailed(streamID: streamID, error, sending: "the status")
            return
        }
        connection.flush()
    }

    /// The trailers carrying `status`. Metadata that cannot be sent (`Metadata.validateForSending`)
    /// turns the status into INTERNAL naming the bad header, without the metadata.
    func statusFields(_ status: RPCError) -> [HeaderField] {
        var status = status
        var metadataFields: [HeaderField] = []
        do {
            try status.metadata.appendHeaderFields(to: &metadataFields)
        } catch {
            logger.debug("a handler's trailing metadata cannot be sent", metadata: ["error": "\(error)"])
            status = error
            metadataFields = []
        }
        var fields = [HeaderField("grpc-status", String(status.code.rawValue))]
        if !status.message.isEmpty { fields.append(HeaderField("grpc-message", PercentEncoding.encode(status.message))) }
        if let details = status.statusDetailsTrailer { fields.append(HeaderField(RPCError.detailsTrailer, Base64.encode(details))) }
        fields += metadataFields
        return fields
    }
}
