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
/// annotations, transcoded to RPC; authentication, tenant isolation, rate limits, CORS, tracing,
/// compression and access logs done here so the services carry none of it.
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    public let routes: RouteTable
    public let transcoder: Transcoder
    let upstreams: UpstreamPool
    let authenticator: APIKeyAuthenticator
    let rateLimiter: RateLimiter
    let tenancy: Tenancy
    /// What the gateway needs to know of each route, worked out once (indexed by `Route.id`).
    let plans: [RoutePlan]
    let logger: Logger
    let openAPIDocument: [UInt8]

    /// The services the gateway exposes (the others have no public API).
    public static let publicServices: Set<String> = [
        "fabrikam.dronedelivery.ingestion.v1.IngestionService", "fabrikam.dronedelivery.delivery.v1.DeliveryService",
        "fabrikam.dronedelivery.deliveryhistory.v1.DeliveryHistoryService", "fabrikam.dronedelivery.package.v1.PackageService",
        "fabrikam.dronedelivery.dronescheduler.v1.DroneSchedulerService", "fabrikam.dronedelivery.accounts.v1.AccountsService",
    ]

    public init(configuration: GatewayConfiguration, logger: Logger = Logger(label: "fabrikam.gateway")) throws {
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
        let upstreams = UpstreamPool(addresses: addresses)
        self.upstreams = upstreams
        authenticator = APIKeyAuthenticator(upstreams: upstreams, maxCacheSeconds: configuration.authCacheSeconds)
        rateLimiter = RateLimiter(rate: configuration.rateLimit.requestsPerSecond, burst: configuration.rateLimit.burst)
        tenancy = Tenancy(upstreams: upstreams)
        let publicRoutes = Set(configuration.publicRoutes)
        let transcoder = self.transcoder
        let schema = transcoder.schema
        plans = routes.routes.map { route in
            let output = schema.messages[route.method.outputType]
            return RoutePlan(isPublic: publicRoutes.contains(route.name),
                             hasStatusPath: output?.field(named: "status_path") != nil,
                             hasCreated: output?.field(named: "created") != nil,
                             responseBodyKey: route.responseBody.isEmpty ? nil : transcoder.memberKey(route.responseBody, type: route.method.outputType),
                             statusPathKey: transcoder.memberKey("status_path", type: route.method.outputType),
                             createdKey: transcoder.memberKey("created", type: route.method.outputType),
                             queued: Self.queuedHandling(route))
        }
        self.logger = logger
        openAPIDocument = OpenAPIDocument(routes: routes, schema: transcoder.schema).json()
    }

    static func queuedHandling(_ route: Route) -> QueuedHandling {
        guard route.method.service == DeliveryV1.DeliveryService.descriptor.fullName else { return .none }
        switch route.method.name {
        case "GetDeliveryStatus": return .reportStatus
        case "TrackDelivery": return .waitForSchedule
        default: return .none
        }
    }

    public func close() async {
        await upstreams.close()
    }

    /// Answers one request. Never throws: every failure is a status and a `google.rpc.Status` body.
    public func handle(_ request: GatewayRequest) async -> GatewayResponse {
        let started = ContinuousClock.now
        let requestID = request.header("x-request-id").flatMap { $0.isEmpty || $0.count > 128 ? nil : $0 } ?? randomHex(bytes: 16)
        var response: GatewayResponse
        var caller: Caller?
        if request.method == "OPTIONS", request.header("access-control-request-method") != nil {
            response = GatewayResponse(status: 204)
        } else {
            do {
                (response, caller) = try await route(request, requestID: requestID)
            } catch let error as GatewayError {
                response = error.response
            } catch let error as TranscodingError {
                response = errorResponse(status: error.status, code: error.status == 413 ? 8 : 3, message: error.message)
            } catch let error as RPCError {
                response = errorResponse(status: httpStatus(for: error.code.rawValue), code: error.code.rawValue, message: error.message)
            } catch {
                response = errorResponse(status: 500, code: 13, message: "\(error)")
            }
        }
        response.headers.append(("x-request-id", requestID))
        addCORS(request, &response)
        compress(request, &response)
        let elapsed = ContinuousClock.now - started
        logger.info("access", metadata: [
            "http.method": "\(request.method)", "http.target": "\(request.path)", "http.status": "\(response.status)",
            "duration_ms": "\(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)",
            "request_id": "\(requestID)", "account": "\(caller?.accountID ?? "-")", "key": "\(caller?.keyID ?? "-")",
        ])
        return response
    }

    private func route(_ request: GatewayRequest, requestID: String) async throws -> (GatewayResponse, Caller?) {
        // HEAD is GET without the body (RFC 9110 section 9.3.2); the listeners leave the body out.
        var request = request
        if request.method == "HEAD" { request.method = "GET" }
        let path = request.path
        switch (request.method, path) {
        case (_, _) where !path.utf8.starts(with: "/v1/".utf8) && !path.hasPrefix("/openapi") && !path.hasPrefix("/healthz") && !path.hasPrefix("/track"):
            throw GatewayError(404, 5, "no route for \(request.method) \(path)")
        case ("GET", "/openapi.json"):
            return (GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(openAPIDocument)), nil)
        case ("GET", "/healthz"):
            return (GatewayResponse(status: 200, headers: [("content-type", "text/plain")], body: .bytes(Array("ok\n".utf8))), nil)
        case ("GET", "/track"), ("GET", "/track/"):
            return (GatewayResponse(status: 200, headers: [("content-type", "text/html; charset=utf-8")], body: .bytes(Array(trackingPage.utf8))), nil)
        default: break
        }
        if request.bodyLimitExceeded || request.body.count > configuration.maxBodyBytes {
            throw GatewayError(413, 8, "the request body is larger than the limit of \(configuration.maxBodyBytes) bytes")
        }
        let aggregate = request.method == "GET" ? SummaryAggregator.match(path) : nil
        var matched: (Route, [String: String])?
        if aggregate == nil {
            switch routes.match(method: request.method, path: path) {
            case .found(let route, let variables): matched = (route, variables)
            case .notFound: throw GatewayError(404, 5, "no route for \(request.method) \(path)")
            case .methodNotAllowed(let allowed):
                var error = GatewayError(405, 12, "\(request.method) is not allowed on \(path); allowed: \(allowed.joined(separator: ", "))")
                error.headers = [("allow", allowed.joined(separator: ", "))]
                throw error
            }
        }

        // Authentication and rate limit.
        var caller: Caller?
        let isPublic = matched.map { plans[$0.0.id].isPublic } ?? false
        if !isPublic {
            guard let secret = apiKey(request) else {
                var error = GatewayError(401, 16, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
                error.headers = [("www-authenticate", "Bearer")]
                throw error
            }
            guard let found = try await authenticate(secret) else {
                var error = GatewayError(401, 16, "the API key is not valid (unknown, revoked, expired, or its account is not active)")
                error.headers = [("www-authenticate", "Bearer error=\"invalid_token\"")]
                throw error
            }
            caller = found
            if let wait = rateLimiter.take(found.keyID) {
                var error = GatewayError(429, 8, "rate limit of \(configuration.rateLimit.requestsPerSecond) requests/s for this key exceeded")
                error.headers = [("retry-after", String(Int(wait.rounded(.up))))]
                throw error
            }
        }
        let options = try callOptions(request, requestID: requestID, caller: caller)
        if let deliveryID = aggregate {
            guard let caller else { throw GatewayError(401, 16, "an API key is required") }
            try await tenancy.checkDelivery(deliveryID, owner: caller.accountID, options: options)
            let summary = try await SummaryAggregator(upstreams: upstreams).summary(deliveryID, options: options)
            return (GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(summary)), caller)
        }
        let (route, variables) = matched!
        var json = try transcoder.requestJSON(route: route, variables: variables, query: request.queryParameters, body: request.body)
        if let caller {
            do {
                try await tenancy.apply(to: &json, route: route, schema: transcoder.schema, caller: caller, options: options)
            } catch let error as GatewayError where error.status == 404 {
                // A delivery Delivery does not know may still be on Ingestion's queue.
                let handling = plans[route.id].queued
                guard handling != .none, let id = variables["delivery_id"] else { throw error }
                if handling == .reportStatus {
                    // The Location of a 202 answers at once: requested (or failed, when it was
                    // dead-lettered).
                    if let queued = try await queuedDelivery(id, options: options) { return (try queuedStatus(queued), caller) }
                } else {
                    // A tracking stream opened right after the 202 starts once Workflow has
                    // scheduled the delivery, and replays it from the start.
                    try await waitWhileQueued(id, options: options)
                }
                // Workflow schedules a delivery before it takes the request off the queue: gone
                // from the queue means Delivery knows it now, so ask Delivery once more.
                try await tenancy.apply(to: &json, route: route, schema: transcoder.schema, caller: caller, options: options)
            }
        }
        return (try await call(route, json: json, request: request, options: options), caller)
    }

    /// How long a tracking stream waits for a queued delivery to be scheduled.
    static let queuedStreamWait = Duration.seconds(30)

    /// A delivery that Ingestion has accepted but Workflow has not finished with, from Ingestion
    /// (which checks the caller's account); nil when it is not on the queue, or when Ingestion
    /// cannot say (down, or too old for the call): then Delivery's answer stands, as it did
    /// before Ingestion was asked.
    private func queuedDelivery(_ deliveryID: String, options: CallOptions) async throws -> IngestionV1.QueuedDelivery? {
        guard let ingestion = upstreams.client("ingestion") else { return nil }
        var request = IngestionV1.GetQueuedDeliveryRequest()
        request.deliveryId = deliveryID
        do {
            return try await IngestionV1.IngestionService.Client(ingestion).getQueuedDelivery(request, options: options)
        } catch let error as RPCError {
            if error.code != .notFound {
                logger.warning("cannot ask Ingestion for a queued delivery", metadata: ["delivery_id": "\(deliveryID)", "error": "\(error)"])
            }
            return nil
        }
    }

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
        while let queued = try await queuedDelivery(deliveryID, options: options), queued.state != .deadLettered {
            if ContinuousClock.now >= deadline {
                var error = GatewayError(503, 14, "delivery \(deliveryID) is still waiting to be scheduled; try again")
                error.headers = [("retry-after", "1")]
                throw error
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    private func call(_ route: Route, json: JSONValue, request: GatewayRequest, options: CallOptions) async throws -> GatewayResponse {
        guard let client = upstream(for: route.method.service) else {
            throw GatewayError(503, 14, "no upstream configured for \(route.method.service)")
        }
        if route.method.serverStreaming {
            return try await openStream(route, input: route.input, output: route.output, json: json, client: client, request: request, options: options)
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
                                                                    client: RPCClient, request: GatewayRequest, options: CallOptions) async throws -> GatewayResponse {
        let message = try transcoder.decode(Input.self, json)
        let sse = (request.header("accept") ?? "").contains("text/event-stream")
        let heartbeat = Duration.milliseconds(Int64(configuration.heartbeatSeconds * 1000))
        let (chunks, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(256))
        var options = options
        options.timeout = nil  // a tracking stream lives as long as the delivery
        let streamOptions = options
        let method = route.method
        let pump = Task {
            // The first message (or the error) decides the status: wait for it before answering.
            do {
                try await client.serverStreaming(method, message, responseType: Output.self, options: streamOptions) { responses in
                    for try await response in responses {
                        let body = try response.jsonUTF8Bytes()
                        continuation.yield(sse ? Array("event: message\ndata: ".utf8) + body + Array("\n\n".utf8)
                                               : Array("{\"result\":".utf8) + body + Array("}\n".utf8))
                    }
                }
            } catch {
                let status = Self.statusJSON(error)
                continuation.yield(sse ? Array("event: error\ndata: ".utf8) + status + Array("\n\n".utf8)
                                       : Array("{\"error\":".utf8) + status + Array("}\n".utf8))
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

    private func apiKey(_ request: GatewayRequest) -> String? {
        if let authorization = request.header("authorization") {
            let bytes = authorization.utf8
            // "Bearer " in any case (ASCII case folding on the bytes), then the key.
            if bytes.count > 7, zip(bytes.prefix(7), "bearer ".utf8).allSatisfy({ $0 | 0x20 == $1 }) {
                let key = bytes.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
                return String(Substring(key))
            }
        }
        return request.header("x-api-key")
    }

    private func authenticate(_ secret: String) async throws -> Caller? {
        do {
            return try await authenticator.authenticate(secret)
        } catch let error as RPCError {
            throw GatewayError(503, 14, "cannot validate the API key now (accounts: \(error.code)); try again")
        }
    }

    /// Deadline, trace, request id, caller and forwarded headers for the upstream call.
    private func callOptions(_ request: GatewayRequest, requestID: String, caller: Caller?) throws -> CallOptions {
        var options = CallOptions()
        options.metadata.reserveCapacity(6 + configuration.forwardHeaders.count)
        var milliseconds = configuration.defaultTimeoutMilliseconds
        if let text = request.header("grpc-timeout") {
            guard let asked = Self.parseTimeout(text) else {
                throw GatewayError(400, 3, "grpc-timeout \"\(text)\" is not a gRPC timeout (digits and one of H M S m u n)")
            }
            milliseconds = min(asked, configuration.maxTimeoutMilliseconds)
        }
        options.timeout = .milliseconds(milliseconds)
        options.metadata.add("x-request-id", requestID)
        if let parent = request.header("traceparent") { options.metadata.add("traceparent", parent) }
        else { options.metadata.add("traceparent", "00-\(randomHex(bytes: 16))-\(randomHex(bytes: 8))-01") }
        if let state = request.header("tracestate") { options.metadata.add("tracestate", state) }
        options.metadata.add("x-correlation-id", requestID)
        if let caller {
            options.metadata.add("x-account-id", caller.accountID)
            options.metadata.add("x-api-key-id", caller.keyID)
        }
        for name in configuration.forwardHeaders {
            if let value = request.header(name) { options.metadata.add(name, value) }
        }
        return options
    }

    static func parseTimeout(_ text: String) -> Int? {
        guard let unit = text.last, let value = Int(text.dropLast()), value >= 0, text.count <= 9 else { return nil }
        switch unit {
        case "H": return value * 3_600_000
        case "M": return value * 60_000
        case "S": return value * 1000
        case "m": return value
        case "u": return max(1, value / 1000)
        case "n": return max(1, value / 1_000_000)
        default: return nil
        }
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

/// Per-route facts the gateway works out when it starts.
struct RoutePlan: Sendable {
    /// Named in the configuration's `publicRoutes`: no API key needed.
    var isPublic: Bool
    /// The response has `status_path` (an accepted asynchronous operation: 202 + Location).
    var hasStatusPath: Bool
    /// The response has `created` (create-or-replace: 201 the first time, 204 after).
    var hasCreated: Bool
    /// `"jsonName":` of the route's `response_body` field (nil: the whole response), and of the
    /// two fields above, for `Transcoder.member`.
    var responseBodyKey: [UInt8]?
    var statusPathKey: [UInt8]
    var createdKey: [UInt8]
    /// What the route does for a delivery that Delivery does not know yet but that may be on
    /// Ingestion's queue.
    var queued: QueuedHandling
}

/// See `RoutePlan.queued`.
enum QueuedHandling: Sendable {
    /// Nothing: Delivery's 404 stands.
    case none
    /// The status route: answer from Ingestion (requested, or failed when dead-lettered).
    case reportStatus
    /// The tracking stream: wait for Workflow to schedule the delivery, then stream it.
    case waitForSchedule
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
