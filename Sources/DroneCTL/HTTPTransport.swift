import NIOCore
import NIOHTTP1
import NIOPosix
import ProtobufKit
import RPC
import Synchronization

/// Calls the public gateway: JSON over HTTP/1.1, by the method's `google.api.http` rule.
/// Answers are read back into the method's response type and printed exactly as over gRPC;
/// streams arrive as Server-Sent Events (or NDJSON) and are printed a message per line.
struct HTTPTransport<Codec: MessageCodec>: Sendable {
    let runner: CallRunner<Codec>
    var method: MethodDescriptor { runner.method }
    var settings: CallSettings { runner.settings }

    func call(_ requests: CallRunner<Codec>.Requests) async throws -> Int32 {
        guard let rule = method.httpRule else {
            throw UsageError("\(method.service)/\(method.name) has no google.api.http annotation: it is reachable over gRPC only (--transport grpc)")
        }
        guard !method.clientStreaming, case .one(let request) = requests else {
            throw UsageError("\(method.service)/\(method.name) streams requests, which the gateway does not take: use --transport grpc")
        }
        let canonical = try JSONParser.parse(try runner.codec.canonicalJSON(of: request))
        let mapping = try HTTPRequestMapping(rule: rule, request: canonical, type: method.inputType, pool: try runner.codec.descriptorPool()) { field in
            "--" + field.map { $0 == "_" ? "-" : $0 }.map(String.init).joined()
        }
        var lastFailure: RPCError?
        // The addresses in order: the first that accepts the connection takes the call.
        for endpoint in settings.endpoints {
            let printer = runner.makePrinter(server: endpoint.description)
            let headers = requestHeaders(endpoint, mapping)
            printer.request(line: "\(mapping.method) \(mapping.target) (HTTP/1.1 to \(endpoint))", headers: headers.map { ($0.name, $0.value) })
            let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
            do {
                channel = try await connect(endpoint)
            } catch {
                lastFailure = (error as? RPCError).map { RPCError(.unavailable, $0.message) } ?? RPCError(.unavailable, "cannot connect to \(endpoint): \(error)")
                continue
            }
            do {
                let outcome = try await withDeadline(settings.timeout, channel: channel.channel) {
                    try await exchange(channel, mapping: mapping, headers: headers, rule: rule, printer: printer)
                }
                return printer.finish(outcome)
            } catch let error as RPCError {
                return printer.finish(CallOutcome(code: error.code, message: error.message))
            } catch is CancellationError {
                return printer.finish(CallOutcome(code: .cancelled, message: "the call was cancelled"))
            } catch {
                return printer.finish(CallOutcome(code: .unavailable, message: "\(error)"))
            }
        }
        let printer = runner.makePrinter(server: settings.endpoints.map(\.description).joined(separator: ","))
        return printer.finish(CallOutcome(code: .unavailable, message: lastFailure?.message ?? "no address to call"))
    }

    func requestHeaders(_ endpoint: Endpoint, _ mapping: HTTPRequestMapping) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [("host", endpoint.description), ("user-agent", "dronectl"),
                                                       ("accept", method.serverStreaming ? "text/event-stream" : "application/json")]
        if mapping.body != nil { headers.append(("content-type", "application/json")) }
        if let timeout = settings.timeout { headers.append(("grpc-timeout", GRPCTimeoutText.format(timeout))) }
        headers += settings.metadata.textEntries
        return headers
    }

    /// Connects to the gateway, over TLS when the settings say so (HTTP/1.1 through ALPN, the
    /// gateway's certificate checked as a gRPC call's would be).
    func connect(_ endpoint: Endpoint) async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        let tls: ClientTLSConnector?
        do {
            tls = try settings.tls.map { try ClientTLSConnector($0, host: endpoint.host, applicationProtocol: "http/1.1") }
        } catch {
            throw RPCError(.unavailable, "TLS configuration: \(error)")
        }
        let handshake = Mutex<EventLoopFuture<Void>?>(nil)
        let connectTimeout = TimeAmount.nanoseconds(Int64(settings.connectTimeout.components.seconds) * 1_000_000_000
                                                    + settings.connectTimeout.components.attoseconds / 1_000_000_000)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)  // IPPROTO_TCP, not SOL_SOCKET (see RPCClient)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let done = try tls.addHandlers(to: channel, peer: "the gateway at \(endpoint)")
                        handshake.withLock { $0 = done }
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        if let done = handshake.withLock({ $0 }) {
            // Within the connect timeout: a server that never finishes the handshake is not waited for.
            let timedOut = Mutex(false)
            let timer = channel.channel.eventLoop.scheduleTask(in: connectTimeout) {
                timedOut.withLock { $0 = true }
                channel.channel.close(promise: nil)
            }
            defer { timer.cancel() }
            do {
                try await done.get()
            } catch {
                try? await channel.channel.close()
                if timedOut.withLock({ $0 }) {
                    throw RPCError(.unavailable, "TLS: the handshake with the gateway at \(endpoint) did not finish within the connect timeout")
                }
                throw error
            }
        }
        return channel
    }

    /// Runs `body`, ending it with DEADLINE_EXCEEDED after `timeout`, and closing the connection
    /// when the caller is cancelled (Ctrl-C).
    func withDeadline<T: Sendable>(_ timeout: Duration?, channel: Channel, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: T.self) { group in
                group.addTask { try await body() }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(for: timeout)
                        throw RPCError(.deadlineExceeded, "the call took longer than --timeout \(DurationText.milliseconds(timeout))")
                    }
                }
                defer { group.cancelAll() }
                guard let first = try await group.next() else { throw CancellationError() }
                return first
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    func exchange(_ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, mapping: HTTPRequestMapping,
                  headers: [(name: String, value: String)], rule: HTTPRule, printer: CallPrinter) async throws -> CallOutcome {
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: mapping.method), uri: mapping.target)
            for header in headers { head.headers.add(name: header.name, value: header.value) }
            if let body = mapping.body { head.headers.add(name: "content-length", value: String(body.count)) }
            try await outbound.write(.head(head))
            if let body = mapping.body { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try await outbound.write(.end(nil))

            var status: HTTPResponseStatus = .ok
            var contentType = ""
            var body: [UInt8] = []
            var events: StreamEvents?
            for try await part in inbound {
                switch part {
                case .head(let response):
                    status = response.status
                    contentType = response.headers.first(name: "content-type") ?? ""
                    printer.headers(response.headers.map { ($0.name.lowercased(), $0.value) },
                                    status: "HTTP/\(response.version.major).\(response.version.minor) \(response.status.code) \(response.status.reasonPhrase)")
                    if (200..<300).contains(response.status.code) && method.serverStreaming {
                        events = StreamEvents(isSSE: !contentType.hasPrefix("application/x-ndjson"))
                    }
                case .body(let buffer):
                    if var stream = events {
                        for event in stream.feed(Array(buffer.readableBytesView)) {
                            if let outcome = try handle(event, printer: printer) { return outcome }
                        }
                        events = stream
                    } else {
                        body += buffer.readableBytesView
                    }
                case .end:
                    if var stream = events {
                        for event in stream.finish() {
                            if let outcome = try handle(event, printer: printer) { return outcome }
                        }
                        return CallOutcome(code: .ok)
                    }
                    return try answer(status: status, body: body, rule: rule, printer: printer)
                }
            }
            throw RPCError(.unavailable, "the gateway closed the connection before the end of its answer")
        }
    }

    /// A whole (not streamed) answer.
    func answer(status: HTTPResponseStatus, body: [UInt8], rule: HTTPRule, printer: CallPrinter) throws -> CallOutcome {
        guard (200..<300).contains(status.code) else { return Self.failure(status: status.code, body: body) }
        // 204 (a create-or-replace that replaced, or a PUT) has no body: nothing to print.
        if status.code == 204 || body.isEmpty { return CallOutcome(code: .ok) }
        var json = body
        if !rule.responseBody.isEmpty {
            // The answer is one field of the response: put it back in its place.
            let pool = try runner.codec.descriptorPool()
            let key = try pool.jsonPath([rule.responseBody], from: method.outputType)[0]
            json = HTTPRequestMapping.bytes(.object([JSONMember(key, try JSONParser.parse(body))]))
        }
        try printMessage(json, printer: printer)
        return CallOutcome(code: .ok)
    }

    func printMessage(_ json: [UInt8], printer: CallPrinter) throws {
        let response: Codec.Response
        do {
            response = try runner.codec.response(fromJSON: json)
        } catch {
            throw RPCError(.internal, "the gateway's answer is not a \(method.outputType): \(error)")
        }
        printer.message(try runner.json(of: response))
    }

    /// One event of a stream: a message to print, or the status that ends it.
    func handle(_ event: StreamEvents.Event, printer: CallPrinter) throws -> CallOutcome? {
        switch event {
        case .message(let json):
            try printMessage(json, printer: printer)
            return nil
        case .error(let json):
            return Self.outcome(statusJSON: json, fallback: .unknown)
        }
    }

    /// The status of a failed answer: its `google.rpc.Status` body, or its HTTP status.
    static func failure(status: UInt, body: [UInt8]) -> CallOutcome {
        outcome(statusJSON: body, fallback: code(forHTTPStatus: Int(status)), httpStatus: Int(status))
    }

    static func outcome(statusJSON: [UInt8], fallback: RPCError.Code, httpStatus: Int? = nil) -> CallOutcome {
        if case .object(let members)? = try? JSONParser.parse(statusJSON) {
            var code = fallback
            var message = ""
            var details: JSONValue?
            for member in members {
                switch (member.key, member.value) {
                case ("code", .integer(let number)): code = RPCError.Code(rawValue: Int(number))
                case ("message", .string(let text)): message = text
                case ("details", let value): details = value
                default: break
                }
            }
            return CallOutcome(code: code, message: message, details: details)
        }
        let text = String(decoding: statusJSON.prefix(200), as: UTF8.self)
        return CallOutcome(code: fallback, message: httpStatus.map { "HTTP \($0)" + (text.isEmpty ? "" : ": \(text)") } ?? text)
    }

    /// The gRPC status an HTTP status stands for (the inverse of the gateway's table).
    static func code(forHTTPStatus status: Int) -> RPCError.Code {
        switch status {
        case 200..<300: return .ok
        case 400: return .invalidArgument
        case 401: return .unauthenticated
        case 403: return .permissionDenied
        case 404: return .notFound
        case 409: return .aborted
        case 412: return .failedPrecondition
        case 413: return .resourceExhausted
        case 429: return .resourceExhausted
        case 499: return .cancelled
        case 501: return .unimplemented
        case 503: return .unavailable
        case 504: return .deadlineExceeded
        case 500..<600: return .internal
        default: return .unknown
        }
    }
}

/// The `grpc-timeout` header's text for a duration (at most 8 digits, the largest unit that fits).
enum GRPCTimeoutText {
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        for (unit, size) in [("n", Int64(1)), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000), ("M", 60_000_000_000), ("H", 3_600_000_000_000)] {
            let value = (nanoseconds + size - 1) / size
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "99999999H"
    }
}
