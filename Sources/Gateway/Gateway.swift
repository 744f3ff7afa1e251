import DroneDeliveryAPI
import Foundation
import GRPCProtos
import Logging
import ProtobufKit
import RPC
import ServiceKit

/// An HTTP request as the gateway sees it (from HTTP/1.1 or HTTP/2).
public struct GatewayRequest: Sendable {
    public var method: String
    /// The path and query, as sent.
    public let target: String
    /// The target without its query string.
    let path: String
    /// Header names in lower case.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The body was larger than the limit (and was dropped while reading).
    public var bodyLimitExceeded = false
    /// The client's IP address, as the listener saw it (the anonymous rate limit is per address).
    public var clientAddress = "unknown"

    public init(method: String, target: String, headers: [(name: String, value: String)], body: [UInt8]) {
        self.init(method: method, target: target, lowercasedHeaders: headers.map { (Self.lowercased($0.name), $0.value) }, body: body)
    }

    /// From header names already in lower case (one pass over the headers instead of two).
    init(method: String, target: String, lowercasedHeaders: [(name: String, value: String)], body: [UInt8]) {
        self.method = method
        self.target = target
        self.path = target.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(target[..<$0]) } ?? target
        self.headers = lowercasedHeaders
        self.body = body
    }

    public func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }

    /// A header name in lower case; names already so (all of HTTP/2's) are kept as they are.
    static func lowercased(_ name: String) -> String {
        name.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ? name.lowercased() : name
    }

    /// Query parameters, percent-decoded (`+` is a space), in order.
    public var queryParameters: [(String, String)] {
        guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return [] }
        return target[target.utf8.index(after: mark)...].split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String? { percentDecode(text.replacingOccurrences(of: "+", with: " ")) }
            guard let name = decode(parts[0]), !name.isEmpty else { return nil }
            return (name, parts.count > 1 ? decode(parts[1]) ?? "" : "")
        }
    }
}

/// The gateway's answer: a body, or a stream of chunks (Server-Sent Events, NDJSON).
public struct GatewayResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        case stream(AsyncStream<[UInt8]>)
    }

    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Body

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

}

/// The public JSON/HTTP API of the system: routes from the services' `google.api.http`
/// annotations, transcoded to RPC; authentication, roles, tenant isolation, rate limits, CORS,
/// tracing, compression and access logs done here so the services carry none of it.
///
/// A request goes through a chain of middlewares, each one step (see `Middleware/`): the
/// gateway's own pages, routing, authentication, authorization, the per-key rate limit, the
/// upstream call's options, transcoding, `Idempotency-Key`, tenancy; then the endpoint calls the
/// service (or joins several for a summary).
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let routes: RouteTable
    public let transcoder: Transcoder
    let upstreams: UpstreamPool
    let authenticator: APIKeyAuthenticator
    let tenancy: Tenancy
    /// What the gateway needs to know of each route, worked out once (indexed by `Route.id`).
    let plans: [RoutePlan]
    let chain: MiddlewareChain
    let logger: Logger
    let lifecycle = GatewayLifecycle()
    /// Requests and connections, for the admin port's `/metrics`.
    let metrics = GatewayMetrics()

    /// The services the gateway exposes (the others have no public API).
    public static let publicServices: Set<String> = [
        "fabrikam.dronedelivery.ingestion.v1.IngestionService", "fabrikam.dronedelivery.delivery.v1.DeliveryService",
        "fabrikam.dronedelivery.deliveryhistory.v1.DeliveryHistoryService", "fabrikam.dronedelivery.package.v1.PackageService",
        "fabrikam.dronedelivery.dronescheduler.v1.DroneSchedulerService", "fabrikam.dronedelivery.accounts.v1.AccountsService",
    ]

    /// Metadata the gateway sets from the caller's key; a client can never send them on.
    static let identityHeaders: Set<String> = ["x-user-id", "x-account-id", "x-api-key-id"]

    /// - Parameter upstreamTLS: how the gateway calls the services: TLS (mutual with a client
    ///   certificate) or, nil, cleartext; by default from FABRIKAM_TLS_CA and
    ///   FABRIKAM_TLS_CLIENT_CERT/KEY (`TLSEnvironment`).
    public init(configuration: GatewayConfiguration, logger: Logger = Logger(label: "fabrikam.gateway"),
                upstreamTLS: ClientTLS? = TLSEnvironment.current?.client) throws {
        self.configuration = configuration
        let files = wellKnownFiles + grpcProtoFiles + droneDeliveryProtoFiles
        routes = try RouteTable(files: files, services: Self.publicServices)
        transcoder = Transcoder(schema: Schema(files: files))
        var addresses: [String: (host: String, port: Int)] = [:]
        for (name, address) in configuration.upstreams {
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                throw ConfigurationFileError(description: "upstreams.\(name) must be host:port, got \"\(address)\"")
            }
            addresses[name] = (String(address[..<colon]), port)
        }
        for name in ["accounts", "delivery", "package"] where addresses[name] == nil {
            throw ConfigurationFileError(description: "upstreams.\(name) is required")
        }
        if let identity = configuration.forwardHeaders.first(where: { Self.identityHeaders.contains($0.lowercased()) }) {
            throw ConfigurationFileError(description: "forwardHeaders: \(identity) is the caller's identity, which the gateway takes from the API key, never from a client")
        }
        let known = Set(routes.routes.map(\.name))
        for name in configuration.publicRoutes + configuration.adminRoutes where !known.contains(name) {
            throw ConfigurationFileError(description: "publicRoutes/adminRoutes: no route \"\(name)\" (routes are \"METHOD /template\")")
        }
        let upstreams = UpstreamPool(addresses: addresses, tls: upstreamTLS)
        self.upstreams = upstreams
        authenticator = APIKeyAuthenticator(upstreams: upstreams, maxCacheSeconds: configuration.authCacheSeconds)
        tenancy = Tenancy(upstreams: upstreams, logger: logger)
        let transcoder = self.transcoder
        plans = try routes.routes.map { try RoutePlan(route: $0, configuration: configuration, transcoder: transcoder) }
        self.logger = logger
        let openAPIDocument = OpenAPIDocument(routes: routes, schema: transcoder.schema, publicRoutes: Set(configuration.publicRoutes)).json()
        chain = MiddlewareChain(middlewares: [
            StaticRoutesMiddleware(openAPIDocument: openAPIDocument, lifecycle: lifecycle),
            RouteResolutionMiddleware(routes: routes, maxBodyBytes: configuration.maxBodyBytes),
            AuthenticationMiddleware(authenticator: authenticator, anonymousLimiter: RateLimiter(rate: configuration.anonymousRateLimit.requestsPerSecond,
                                                                                                  burst: configuration.anonymousRateLimit.burst),
                                     anonymousLimit: configuration.anonymousRateLimit, plans: plans),
            AuthorizationMiddleware(plans: plans, summaryPlan: RoutePlan.summary),
            RateLimitMiddleware(limiter: RateLimiter(rate: configuration.rateLimit.requestsPerSecond, burst: configuration.rateLimit.burst),
                                limit: configuration.rateLimit),
            CallOptionsMiddleware(configuration: configuration),
            TranscodingMiddleware(transcoder: transcoder),
            IdempotencyKeyMiddleware(plans: plans),
            TenancyMiddleware(tenancy: tenancy, plans: plans),
        ])
    }

    public func close() async {
        await upstreams.close()
    }

    /// From now on the health probe (`/healthz`) answers 503, so a load balancer stops sending
    /// new requests, while requests are still served (the process drains before it stops).
    public func beginDraining() {
        lifecycle.beginDraining()
    }

    /// Answers one request. Never throws: every failure is a status and a `google.rpc.Status` body.
    ///
    /// Counted in the gateway's HTTP metrics (`GatewayMetrics`: by method, route template and
    /// status; its time; in flight while it is worked out). With tracing on (`Tracing.recorder`),
    /// the request is a SERVER span: a child of the client's `traceparent` when it sent one, the
    /// root of a new trace otherwise; it is the current trace while the request is handled, so
    /// every upstream call is a CLIENT span under it (`TracingClientInterceptor` on the upstream
    /// clients). A client's unsampled `traceparent` (flags 00), or a new trace the sampler left
    /// out, records no span but still travels upstream. A streamed answer's span ends when its
    /// head is ready.
    public func handle(_ request: GatewayRequest) async -> GatewayResponse {
        let started = ContinuousClock.now
        metrics.inFlight.increment()
        // Without tracing, straight to the request (one async level less per request).
        let answered: (GatewayResponse, route: String?)
        if Tracing.recorder == nil { answered = await handleRequest(request) } else { answered = await tracedRequest(request) }
        let (response, route) = answered
        metrics.inFlight.decrement()
        metrics.answered(method: request.method, route: route ?? GatewayMetrics.otherRoute, status: response.status, elapsed: .now - started)
        return response
    }

    private func tracedRequest(_ request: GatewayRequest) async -> (GatewayResponse, route: String?) {
        guard let recorder = Tracing.recorder else { return await handleRequest(request) }
        var incoming: CommonV1.TraceContext?
        if let parent = request.header("traceparent"), RequestTrace.isValidTraceparent(parent) {
            var trace = CommonV1.TraceContext()
            trace.traceparent = parent
            trace.tracestate = request.header("tracestate") ?? ""
            incoming = trace
        }
        let trace = incoming.map(RequestTrace.child(of:)) ?? RequestTrace.makeNew()
        let start = Tracing.now()
        let (response, route) = await RequestTrace.$current.withValue(trace) { await handleRequest(request) }
        guard RequestTrace.isSampled(trace.traceparent) else { return (response, route) }
        var span = FinishedSpan(traceparent: trace.traceparent, parentTraceparent: incoming?.traceparent ?? "", traceState: trace.tracestate,
                                name: route.map { "\(request.method) \($0)" } ?? request.method, kind: .server, start: start, end: Tracing.now(),
                                attributes: [SpanAttribute("http.request.method", request.method), SpanAttribute("url.path", request.path),
                                             SpanAttribute("http.response.status_code", response.status)])
        if let route { span.attributes.append(SpanAttribute("http.route", route)) }
        if response.status >= 500 { span.error = "HTTP \(response.status)" }
        recorder.record(span)
        return (response, route)
    }

    /// The answer, and the template of the route it matched (nil: none; the gateway's own pages
    /// by their fixed path).
    private func handleRequest(_ request: GatewayRequest) async -> (GatewayResponse, route: String?) {
        let started = ContinuousClock.now
        let requestID = request.header("x-request-id").flatMap { $0.isEmpty || $0.count > 128 ? nil : $0 } ?? randomHex(bytes: 16)
        var response: GatewayResponse
        var context = RequestContext(request: request, requestID: requestID)
        if request.method == "OPTIONS", request.header("access-control-request-method") != nil {
            response = GatewayResponse(status: 204)
        } else {
            do {
                response = try await chain.respond(to: &context) { try await self.dispatch(&$0) }
            } catch let error as GatewayError {
                response = error.response
            } catch let error as TranscodingError {
                response = errorResponse(status: error.status, code: error.status == 413 ? 8 : 3, message: error.message)
            } catch let error as RPCError {
                // The whole google.rpc.Status, details included: a request that breaks a field
                // rule (refused by the upstream client before it is sent, or by the service)
                // answers 400 with the google.rpc.BadRequest naming every violated field.
                let error = publicError(error, requestID: requestID)
                response = GatewayResponse(status: httpStatus(for: error.code.rawValue), headers: [("content-type", "application/json")],
                                           body: .bytes(Self.statusJSON(error)))
            } catch {
                let error = publicError(RPCError(.internal, "\(error)"), requestID: requestID)
                response = errorResponse(status: 500, code: 13, message: error.message)
            }
        }
        let route: String? = switch context.target {
        case .route(let matched, _): matched.template.description
        case .summary: "/v1/deliveries/{delivery_id}/summary"
        case .unresolved: context.ownPage
        }
        response.headers.append(("x-request-id", requestID))
        addCORS(request, &response)
        compress(request, &response)
        let elapsed = ContinuousClock.now - started
        let caller = context.caller
        logger.info("access", metadata: [
            "http.method": "\(request.method)", "http.target": "\(request.path)", "http.status": "\(response.status)",
            "duration_ms": "\(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)",
            "request_id": "\(requestID)", "account": "\(caller?.accountID ?? "-")", "key": "\(caller?.keyID ?? "-")",
            "client": "\(request.clientAddress)",
        ])
        return (response, route)
    }

    /// What a client may see of an upstream's failure. INTERNAL, UNKNOWN and DATA_LOSS carry
    /// internal text (a database's message, a stack of causes): the client gets INTERNAL with the
    /// request id, the log gets the text.
    func publicError(_ error: RPCError, requestID: String) -> RPCError {
        guard [.internal, .unknown, .dataLoss].contains(error.code) else { return error }
        logger.error("internal error", metadata: ["request_id": "\(requestID)", "code": "\(error.code)", "error": "\(error.message)"])
        return RPCError(.internal, "internal error (request id \(requestID)); the details are in the gateway's log")
    }

    /// The chain's endpoint: the summary, a queued delivery's status, or the service's answer.
    private func dispatch(_ context: inout RequestContext) async throws -> GatewayResponse {
        switch context.target {
        case .summary(let deliveryID):
            let summary = try await SummaryAggregator(upstreams: upstreams).summary(deliveryID, owner: context.caller?.accountID ?? "",
                                                                                  options: context.options)
            return GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(summary))
        case .route(let route, _):
            if case .queued(let queued)? = context.deliveryPlace {
                switch plans[route.id].queued {
                case .reportStatus:
                    // The Location of a 202 answers at once: requested (or failed, when it was dead-lettered).
                    return try queuedStatus(queued)
                case .waitForSchedule:
                    // A tracking stream opened right after the 202 starts once Workflow has
                    // scheduled the delivery, and replays it from the start.
                    try await waitWhileQueued(queued.deliveryId, options: context.options)
                case .none:
                    break
                }
            }
            return try await call(route, json: context.json, request: context.request, requestID: context.requestID, options: context.options)
        case .unresolved:
            throw GatewayError(404, 5, "no route for \(context.request.method) \(context.request.path)")
        }
    }

    /// The request of a resumable stream (`resume`) opened again after `sequence` (the original
    /// request when no event came yet); nil for a stream that cannot resume.
    static func resumedRequest<Input: JSONMessage>(_ type: Input.Type, _ resume: StreamResume?, _ json: JSONValue, after sequence: Int64?,
                                                   transcoder: Transcoder) -> Input? {
        guard let resume else { return nil }
        guard let sequence else { return try? transcoder.decode(Input.self, json) }
        return try? transcoder.decode(Input.self, resume.resumed(json, lastEventID: String(sequence)))
    }

    /// How many times one resumable stream is opened again after its upstream answered
    /// UNAVAILABLE (a Delivery replica that died mid-stream), and the pause before each.
    static let streamReopens = 3
    static let streamReopenPause = Duration.milliseconds(200)

    /// How long a tracking stream waits for a queued delivery to be scheduled.
    static let queuedStreamWait = Duration.seconds(30)

    /// The status route's answer for a queued delivery.
    private func queuedStatus(_ queued: IngestionV1.QueuedDelivery) throws -> GatewayResponse {
        var status = DeliveryV1.DeliveryStatus()
        status.stage = queued.state == .deadLettered ? .failed : .requested
        status.updateTime = queued.acceptTime
        return GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(try status.jsonUTF8Bytes()))
    }

    /// Returns once the delivery is no longer waiting on Ingestion's queue (or was dead-lettered,
    /// or Ingestion cannot say); 503 with Retry-After if Workflow has not taken it within
    /// `queuedStreamWait`.
    private func waitWhileQueued(_ deliveryID: String, options: CallOptions) async throws {
        let deadline = ContinuousClock.now + Self.queuedStreamWait
        while let queued = try await tenancy.queuedDelivery(deliveryID, options: options), queued.state != .deadLettered {
            if ContinuousClock.now >= deadline {
                var error = GatewayError(503, 14, "delivery \(deliveryID) is still waiting to be scheduled; try again")
                error.headers = [("retry-after", "1")]
                throw error
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    private func call(_ route: Route, json: JSONValue, request: GatewayRequest, requestID: String, options: CallOptions) async throws -> GatewayResponse {
        guard let client = upstream(for: route.method.service) else {
            throw GatewayError(503, 14, "no upstream configured for \(route.method.service)")
        }
        if route.method.serverStreaming {
            return try await openStream(route, input: route.input, output: route.output, json: json, client: client, request: request,
                                        requestID: requestID, options: options)
        }
        return try await unary(route, json: json, client: client, options: options)
    }

    private func unary(_ route: Route, json: JSONValue, client: RPCClient, options: CallOptions) async throws -> GatewayResponse {
        // Message types are known only at run time: the request is encoded through its
        // existential type, and the answer decoded in place by the route's output type.
        let message = try transcoder.decode(route.input, json)
        let output = route.output
        let method = route.method
        let answer = try await client.unary(method, message, options: options) { bytes -> any JSONMessage in
            do { return try output.init(decoding: bytes) } catch {
                throw RPCError(.internal, "could not decode \(method.outputType) from \(method.service): \(error)")
            }
        }
        let whole = try answer.jsonUTF8Bytes()
        let plan = plans[route.id]
        let body = plan.responseBodyKey.map { transcoder.member(key: $0, of: whole) } ?? whole
        // REST conventions from the response itself: an accepted asynchronous operation (a
        // status path) is 202 with a Location; create-or-replace is 201 the first time, 204 after.
        if plan.hasStatusPath,
           case .string(let location)? = try? JSONParser.parse(transcoder.member(key: plan.statusPathKey, of: whole)) {
            return GatewayResponse(status: 202, headers: [("content-type", "application/json"), ("location", location)], body: .bytes(body))
        }
        if plan.hasCreated {
            if transcoder.member(key: plan.createdKey, of: whole) == Array("true".utf8) {
                return GatewayResponse(status: 201, headers: [("content-type", "application/json")], body: .bytes(body))
            }
            return GatewayResponse(status: 204)
        }
        if route.httpMethod == "PUT" { return GatewayResponse(status: 204) }
        return GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(body))
    }

    private func openStream<Input: JSONMessage, Output: JSONMessage>(_ route: Route, input: Input.Type, output: Output.Type, json: JSONValue,
                                                                    client: RPCClient, request: GatewayRequest, requestID: String,
                                                                    options: CallOptions) async throws -> GatewayResponse {
        let sse = (request.header("accept") ?? "").contains("text/event-stream")
        let resume = plans[route.id].resume
        var json = json
        if sse, let resume, let lastEventID = request.header("last-event-id"), !lastEventID.isEmpty {
            json = try resume.resumed(json, lastEventID: lastEventID)
        }
        let message = try transcoder.decode(Input.self, json)
        // A request that breaks a field rule is a 400 now, not a 200 whose stream carries the
        // client's local INVALID_ARGUMENT (found by schemathesis: `after_sequence=-3` was 200).
        try RPCError.checkFieldRules(message)
        let transcoder = self.transcoder
        let heartbeat = Duration.milliseconds(Int64(configuration.heartbeatSeconds * 1000))
        let (chunks, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(256))
        var options = options
        // A tracking stream lives as long as the delivery: the gateway's default deadline does
        // not apply. A deadline the client asked for (`grpc-timeout`) does: the stream then ends
        // with DEADLINE_EXCEEDED (it was dropped, and a client that bounded its calls, like
        // schemathesis in make contract-test, held a stream of heartbeats open for good).
        if request.header("grpc-timeout") == nil { options.timeout = nil }
        let streamOptions = options
        let method = route.method
        let requestJSON = json
        let pump = Task {
            // The first message (or the error) decides the status: wait for it before answering.
            var request = message
            var lastSequence: Int64?
            var reopened = 0
            while true {
                do {
                    try await client.serverStreaming(method, request, responseType: Output.self, options: streamOptions) { responses in
                        for try await response in responses {
                            let body = try response.jsonUTF8Bytes()
                            if let sequence = resume?.sequence(of: body, transcoder: transcoder) { lastSequence = sequence }
                            let id = sse ? resume?.idLine(body, transcoder: transcoder) ?? [] : []
                            continuation.yield(sse ? id + Array("event: message\ndata: ".utf8) + body + Array("\n\n".utf8)
                                                   : Array("{\"result\":".utf8) + body + Array("}\n".utf8))
                        }
                    }
                } catch let error as RPCError where error.code == .unavailable && reopened < Self.streamReopens
                            && Self.resumedRequest(Input.self, resume, requestJSON, after: lastSequence, transcoder: transcoder) != nil {
                    // The upstream replica went away (or could not be reached): open the stream
                    // again, on whichever replica answers, after the last event sent.
                    reopened += 1
                    request = Self.resumedRequest(Input.self, resume, requestJSON, after: lastSequence, transcoder: transcoder) ?? request
                    logger.info("tracking stream reopened", metadata: ["method": "\(method.path)", "after": "\(lastSequence ?? -1)",
                                                                       "request_id": "\(requestID)", "error": "\(error.message)"])
                    do { try await Task.sleep(for: Self.streamReopenPause) } catch { break }  // the client went away
                    continue
                } catch {
                    let status = Self.statusJSON(self.publicError(error as? RPCError ?? RPCError(.unknown, "\(error)"), requestID: requestID))
                    continuation.yield(sse ? Array("event: error\ndata: ".utf8) + status + Array("\n\n".utf8)
                                           : Array("{\"error\":".utf8) + status + Array("}\n".utf8))
                }
                break
            }
            continuation.finish()
        }
        let beat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                if Task.isCancelled { break }
                continuation.yield(sse ? Array(": heartbeat\n\n".utf8) : Array("\n".utf8))
            }
        }
        continuation.onTermination = { _ in
            pump.cancel()
            beat.cancel()
        }
        let contentType = sse ? "text/event-stream" : "application/x-ndjson"
        return GatewayResponse(status: 200, headers: [("content-type", contentType), ("cache-control", "no-cache"), ("x-accel-buffering", "no")],
                               body: .stream(chunks))
    }

    // MARK: Helpers

    /// The client of a service: `fabrikam.dronedelivery.<name>.v1.<Service>` is upstream `<name>`.
    func upstream(for service: String) -> RPCClient? {
        upstreams.client(forService: service)
    }

    static func statusJSON(_ error: any Error) -> [UInt8] {
        let rpc = error as? RPCError ?? RPCError(.unknown, "\(error)")
        // google.rpc.Status JSON: details as Any's JSON form, {"@type": ..., fields}. A detail of
        // a type the registry does not know cannot be written; the status then goes without them.
        var status = rpc.status
        if let body = try? status.jsonUTF8Bytes() { return body }
        status.details = []
        return (try? status.jsonUTF8Bytes()) ?? Array("{\"code\":2}".utf8)
    }

    func errorResponse(status: Int, code: Int, message: String) -> GatewayResponse {
        GatewayError(status, code, message).response
    }

    private func addCORS(_ request: GatewayRequest, _ response: inout GatewayResponse) {
        guard let origin = request.header("origin") else { return }
        let allowed = configuration.cors.allowedOrigins
        guard allowed.contains("*") || allowed.contains(origin) else { return }
        response.headers.append(("access-control-allow-origin", allowed.contains("*") ? "*" : origin))
        response.headers.append(("vary", "Origin"))
        response.headers.append(("access-control-expose-headers", "location, x-request-id, retry-after"))
        if request.method == "OPTIONS" {
            response.headers.append(("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"))
            response.headers.append(("access-control-allow-headers", configuration.cors.allowedHeaders.joined(separator: ", ")))
            response.headers.append(("access-control-max-age", String(configuration.cors.maxAgeSeconds)))
        }
    }

    private func compress(_ request: GatewayRequest, _ response: inout GatewayResponse) {
        guard case .bytes(let body) = response.body, body.count >= configuration.gzipMinimumBytes,
              (request.header("accept-encoding") ?? "").contains("gzip"), let compressed = try? Gzip.compress(body) else { return }
        response.body = .bytes(compressed)
        response.headers.append(("content-encoding", "gzip"))
        response.headers.append(("vary", "Accept-Encoding"))
    }
}

/// A failure the gateway answers itself.
struct GatewayError: Error {
    var status: Int
    var code: Int
    var message: String
    var headers: [(name: String, value: String)] = []

    init(_ status: Int, _ code: Int, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    var response: GatewayResponse {
        var status = Google.Rpc.Status()
        status.code = Int32(code)
        status.message = message
        let body = (try? status.jsonUTF8Bytes()) ?? []
        return GatewayResponse(status: self.status, headers: [("content-type", "application/json")] + headers, body: .bytes(body))
    }
}
