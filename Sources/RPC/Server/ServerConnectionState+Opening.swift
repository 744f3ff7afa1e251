import HTTP2
import Logging
import NIOCore

/// Opening a call: header validation, routing, and starting the handler.
extension ServerConnectionState {
    func open(streamID: Int32, fields: [HeaderField], endStream: Bool) {
        var path = ""
        var method = ""
        var contentType = ""
        var timeout: String?
        var encoding: String?
        var acceptEncoding: String?
        var metadataFields: [(name: String, value: String)] = []
        metadataFields.reserveCapacity(fields.count)
        for field in fields {
            switch field.name {
            case ":path": path = field.value
            case ":method": method = field.value
            case "content-type": contentType = field.value
            case "grpc-timeout": timeout = field.value
            case "grpc-encoding": encoding = field.value
            case "grpc-accept-encoding": acceptEncoding = field.value
            default: metadataFields.append((field.name, field.value))
            }
        }
        // Not gRPC at all: HTTP 415, as PROTOCOL-HTTP2 asks.
        guard contentType == "application/grpc" || contentType.hasPrefix("application/grpc+") || contentType.hasPrefix("application/grpc;") else {
            respondWithoutCall(streamID: streamID, httpStatus: "415", status: RPCError(.internal, "content-type \(contentType.isEmpty ? "(none)" : contentType) is not application/grpc"))
            return
        }
        guard method == "POST" else {
            respondWithoutCall(streamID: streamID, httpStatus: "405", status: RPCError(.internal, ":method \(method) is not POST"))
            return
        }
        guard let handler = router.methods[path] else {
            let service = path.split(separator: "/").first.map(String.init) ?? ""
            let known = router.serviceNames.contains(service)
            respondWithoutCall(streamID: streamID, httpStatus: "200", status: RPCError(.unimplemented, known ? "method \(path) is not implemented" : "service \(service) is not implemented"))
            return
        }
        let requestCompression: Compression?
        do {
            requestCompression = try Compression.named(encoding)
        } catch {
            let status = error as? RPCError ?? RPCError(.unimplemented, "grpc-encoding \(encoding ?? "") is not supported")
            respondWithoutCall(streamID: streamID, httpStatus: "200", status: status,
                               extraFields: [HeaderField("grpc-accept-encoding", Compression.acceptEncoding)])
            return
        }
        // The call's start, read once: its metrics, its log line and its span all measure from
        // it (each read the clock for itself before).
        let started = CallClock.nanoseconds()
        let deadline: ContinuousClock.Instant?
        var timeoutAmount: TimeAmount?
        if let timeout {
            guard let duration = GRPCTimeout.parse(timeout) else {
                respondWithoutCall(streamID: streamID, httpStatus: "400", status: RPCError(.internal, "grpc-timeout \(timeout) is malformed"))
                return
            }
            deadline = .now + duration
            timeoutAmount = .nanoseconds(max(0, duration.nanosecondsClamped))
        } else {
            deadline = nil
        }

        let acceptsGzip = acceptEncoding.map(Compression.acceptsGzip) ?? false
        let context = ServerContext(method: handler.descriptor, metadata: Metadata(fields: metadataFields), deadline: deadline, peer: peer,
                                    requestEncoding: requestCompression?.name, acceptsCompressedResponses: acceptsGzip, startNanoseconds: started)
        let requests = InboundQueue<ReceivedMessage>()
        let call = ServerCall(streamID: streamID, context: context, requests: requests, connection: loopBound, decodingOptions: decodingOptions)
        let state = Call(deframer: MessageDeframer(maxMessageSize: options.maxMessageSize, compression: requestCompression),
                         requests: requests, acceptsGzip: acceptsGzip)
        calls[streamID] = state
        if let timeoutAmount {
            let at = NIODeadline.now() + timeoutAmount
            state.deadline = at
            state.timeout = timeoutAmount
            armDeadlineTimer(for: at)
        }
        // Weak: a deferred start is kept by the call's own state until the request stream ends.
        let start: () -> Void = { [weak self, weak state, logger, executor, interceptors = options.interceptors, run = handler.run,
                                   metrics = handler.metrics] in
            guard let self, let state else { return }
            self.whenHandlerSlotFree(streamID: streamID) {
                state.task = Self.startHandler(call: call, run: run, interceptors: interceptors, metrics: metrics, deadline: deadline,
                                               executor: executor, logger: logger, path: path)
            }
        }
        if handler.requestStreaming {
            start()
        } else {
            state.startWhenRequestsEnd = start
        }
        if endStream { endOfRequests(streamID: streamID) }
    }

    /// Runs `start` now if fewer handlers than the stream limit are running on this connection,
    /// else once one returns (see `runningHandlers`).
    func whenHandlerSlotFree(streamID: Int32, _ start: @escaping () -> Void) {
        if runningHandlers < Int(options.http2.maxConcurrentStreams) {
            runningHandlers += 1
            start()
        } else {
            waitingToStart.append((streamID, start))
        }
    }

    /// A handler returned: the oldest waiting call whose stream is still open starts.
    func startNextWaitingHandler() {
        while !waitingToStart.isEmpty {
            let next = waitingToStart.removeFirst()
            guard let call = calls[next.streamID], !call.finished else { continue }
            runningHandlers += 1
            next.start()
            return
        }
    }

    /// Runs a call's handler in its own task, on the connection's event loop. The task starts
    /// immediately, in this event-loop turn: a handler that does not suspend (a unary call whose
    /// request is all there) runs to its response without being queued, as grpc C++'s callback
    /// API runs its reactors inline.
    static func startHandler(call: ServerCall, run: @escaping @Sendable (ServerCall) async throws -> Void,
                             interceptors: [any ServerInterceptor], metrics: RPCMetrics.MethodMetrics?, deadline: ContinuousClock.Instant?,
                             executor: EventLoopTaskExecutor, logger: Logger, path: String) -> Task<Void, Never> {
        Task.immediate(executorPreference: executor) {
            let started = metrics?.begin(at: call.context.startNanoseconds)
            let failure: RPCError?
            do {
                // The deadline rides along to every call the handler makes onward.
                try await CallDeadline.$current.withValue(deadline) {
                    if interceptors.isEmpty {
                        try await run(call)
                    } else {
                        try await runServerInterceptors(interceptors, call.context) { _ in try await run(call) }
                    }
                }
                failure = nil
            } catch let error as RPCError {
                failure = error
            } catch is CancellationError {
                failure = RPCError(.cancelled, "the call was cancelled")
            } catch {
                logger.debug("handler failed", metadata: ["path": "\(path)", "error": "\(error)"])
                failure = RPCError(.unknown, "the handler failed")
            }
            // Counted before the status goes out: a client that reads the metrics after its
            // answer sees its call.
            if let metrics, let started { metrics.end(failure?.code ?? .ok, since: started) }
            call.finish(failure)
        }
    }

    /// Answers a stream that never becomes a call, with a Trailers-Only response. (No
    /// RST_STREAM(NO_ERROR) after it for a client still sending: nghttp2 would drop the queued
    /// response in favour of the reset; the client's further DATA is acknowledged and dropped.)
    func respondWithoutCall(streamID: Int32, httpStatus: String, status: RPCError, extraFields: [HeaderField] = []) {
        var fields = [HeaderField(":status", httpStatus), HeaderField("content-type", "application/grpc")]
        fields += extraFields
        fields += statusFields(status)
        do {
            try connection.session.sendResponseHeaders(streamID: streamID, fields, endStream: true)
        } catch {
            // The stream is gone already (reset by the client): there is no one to answer.
            logger.debug("could not answer a refused stream", metadata: ["stream": "\(streamID)", "error": "\(error)"])
        }
    }
}
