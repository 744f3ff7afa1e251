#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import ProtobufKit
import RPC
import Synchronization

/// Calls over gRPC with the project's RPC runtime: HTTP/2 (cleartext, or TLS with --tls) to the service, round-robin
/// over the `--server` addresses.
struct GRPCTransport<Codec: MessageCodec>: Sendable {
    let runner: CallRunner<Codec>
    var method: MethodDescriptor { runner.method }
    var settings: CallSettings { runner.settings }

    func makeClient() throws -> RPCClient {
        let options = RPCClient.Options.defaults { $0.connectTimeout = settings.connectTimeout; $0.tls = settings.tls }
        if settings.endpoints.count == 1 {
            return RPCClient(host: settings.endpoints[0].host, port: settings.endpoints[0].port, options: options)
        }
        return try RPCClient(endpoints: try settings.endpoints.map { (try Self.numericHost($0.host), $0.port) }, options: options)
    }

    /// A host as an IP address (the runtime's fixed endpoints take addresses, not names).
    static func numericHost(_ host: String) throws -> String {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list, let address = first.pointee.ai_addr else {
            throw RPCError(.unavailable, "\(host) does not resolve to any address")
        }
        defer { freeaddrinfo(list) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(address, first.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else {
            throw RPCError(.unavailable, "\(host) does not resolve to any address")
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func call(_ requests: CallRunner<Codec>.Requests) async throws -> Int32 {
        let client = try makeClient()
        let server = settings.endpoints.map(\.description).joined(separator: ",")
        let printer = runner.makePrinter(server: server)
        let options = CallOptions(timeout: settings.timeout, metadata: settings.metadata)
        var sentHeaders = settings.metadata.textEntries
        if let timeout = settings.timeout { sentHeaders.insert(("grpc-timeout", "\(DurationText.milliseconds(timeout))"), at: 0) }
        printer.request(line: "POST \(method.path) (gRPC to \(server))", headers: sentHeaders)
        let senderFailure = SenderFailure()
        let exitCode: Int32
        do {
            let trailers: [(name: String, value: String)]
            switch requests {
            case .one(let request):
                trailers = try await oneRequest(request, client: client, options: options, printer: printer)
            case .list(let list):
                trailers = try await streamingRequests(client: client, options: options, printer: printer, failure: senderFailure) { writer in
                    for request in list { try await writer.write(request) }
                }
            case .live(let source):
                trailers = try await streamingRequests(client: client, options: options, printer: printer, failure: senderFailure) { writer in
                    var lines = source.lines()
                    while let (document, name) = try await lines.next() {
                        try await writer.write(try runner.request(from: document, source: name))
                    }
                }
            }
            exitCode = printer.finish(CallOutcome(code: .ok, trailers: trailers))
        } catch let error as RPCError {
            if let failure = senderFailure.recorded { throw failure }
            exitCode = printer.finish(CallOutcome(code: error.code, message: error.message, trailers: error.metadata.textEntries,
                                                  details: StatusDetails.json(error.details)))
        }
        await client.close()
        return exitCode
    }

    /// A unary or server-streaming call: one request, responses printed as they arrive.
    func oneRequest(_ request: Codec.Request, client: RPCClient, options: CallOptions, printer: CallPrinter) async throws -> [(name: String, value: String)] {
        try await client.serverStreaming(method, request, responseType: Codec.Response.self, options: options) { responses in
            try await readResponses(responses, printer: printer)
        }
    }

    /// Prints every response; returns the trailers. Headers are printed before the first message
    /// (or at the end, when there is none).
    func readResponses(_ responses: ResponseStream<Codec.Response>, printer: CallPrinter) async throws -> [(name: String, value: String)] {
        var iterator = responses.makeAsyncIterator()
        var count = 0
        do {
            while let response = try await iterator.next() {
                printer.headers(responses.initialMetadata.textEntries)
                count += 1
                if !method.serverStreaming && count > 1 {
                    throw RPCError(.internal, "the server sent more than one response to a call that has one")
                }
                printer.message(try runner.json(of: response))
            }
        } catch {
            printer.headers(responses.initialMetadata.textEntries)
            throw error
        }
        printer.headers(responses.initialMetadata.textEntries)
        if !method.serverStreaming && count == 0 { throw RPCError(.internal, "the server sent no response message") }
        return responses.trailingMetadata.textEntries
    }

    /// A client-streaming or bidirectional call. The requests are written by a task of their
    /// own, beside the reading of responses, so both directions interleave; it is not awaited
    /// when the call ends first (it may be waiting on a person typing).
    func streamingRequests(client: RPCClient, options: CallOptions, printer: CallPrinter, failure: SenderFailure,
                           _ send: @escaping @Sendable (RequestWriter<Codec.Request>) async throws -> Void) async throws -> [(name: String, value: String)] {
        let transport = self
        let relay = CancellationRelay()
        let call = Task {
            try await client.bidirectional(transport.method, requestType: Codec.Request.self, responseType: Codec.Response.self, options: options) { writer, responses in
                let sender = Task {
                    do {
                        try await send(writer)
                        writer.finish()
                    } catch {
                        // A bad line (or unreadable input) ends the call: cancel it (RST_STREAM).
                        failure.record(error)
                        relay.cancel()
                    }
                }
                defer { sender.cancel() }
                return try await transport.readResponses(responses, printer: printer)
            }
        }
        relay.attach { call.cancel() }
        return try await withTaskCancellationHandler {
            try await call.value
        } onCancel: {
            call.cancel()
        }
    }
}

/// Lets a sender beside a call cancel the task that runs it, even if it fails before the
/// task's handle is known.
final class CancellationRelay: Sendable {
    private let state = Mutex<(cancel: (@Sendable () -> Void)?, requested: Bool)>((nil, false))

    func attach(_ cancel: @escaping @Sendable () -> Void) {
        let requested = state.withLock { state -> Bool in
            state.cancel = cancel
            return state.requested
        }
        if requested { cancel() }
    }

    func cancel() {
        let cancel = state.withLock { state -> (@Sendable () -> Void)? in
            state.requested = true
            return state.cancel
        }
        cancel?()
    }
}
