import RPC
import ServiceKit

/// The upstream call's options: deadline (the client's `grpc-timeout`, capped, or the default),
/// request id, W3C trace context, the caller (`x-account-id`, `x-api-key-id`, and `x-user-id`
/// when the key acts for a user: taken from the key, never from the client), the configured
/// forwarded headers, and whether the calls may be repeated (a GET's may).
struct CallOptionsMiddleware: GatewayMiddleware {
    let configuration: GatewayConfiguration

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        let request = context.request
        var options = CallOptions()
        options.metadata.reserveCapacity(7 + configuration.forwardHeaders.count)
        var milliseconds = configuration.defaultTimeoutMilliseconds
        if let text = request.header("grpc-timeout") {
            guard let asked = Self.parseTimeout(text) else {
                throw GatewayError(400, 3, "grpc-timeout \"\(text)\" is not a gRPC timeout (digits and one of H M S m u n)")
            }
            milliseconds = min(asked, configuration.maxTimeoutMilliseconds)
        }
        options.timeout = .milliseconds(milliseconds)
        // A GET only reads (HTTP's safe method): its upstream calls may be repeated on another
        // replica when one is unavailable (`RetryPolicy.gatewayUpstream`).
        if request.method == "GET" { options.isIdempotent = true }
        options.metadata.add("x-request-id", context.requestID)
        if Tracing.recorder == nil {
            if let parent = request.header("traceparent") { options.metadata.add("traceparent", parent) }
            else { options.metadata.add("traceparent", "00-\(randomHex(bytes: 16))-\(randomHex(bytes: 8))-01") }
            if let state = request.header("tracestate") { options.metadata.add("tracestate", state) }
            options.metadata.add("x-correlation-id", context.requestID)
        }
        // With tracing on, the request's span is the current trace: the upstream clients'
        // TracingClientInterceptor sends each call's own traceparent (a CLIENT span under it).
        if let caller = context.caller {
            options.metadata.add("x-account-id", caller.accountID)
            options.metadata.add("x-api-key-id", caller.keyID)
            if !caller.userID.isEmpty { options.metadata.add("x-user-id", caller.userID) }
        }
        for name in configuration.forwardHeaders {
            if let value = request.header(name) { options.metadata.add(name, value) }
        }
        context.options = options
        return nil
    }

    /// Milliseconds of a gRPC timeout (`grpc-timeout`: digits and a unit), nil if malformed.
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
}
