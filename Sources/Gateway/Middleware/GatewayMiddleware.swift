/// The rest of the chain after a middleware: the next middlewares, then the endpoint.
typealias NextStep = (inout RequestContext) async throws -> GatewayResponse

/// One step of the gateway's request handling (routing, authentication, limits, tenancy, ...),
/// in the manner of hummingbird's `RouterMiddleware`: it looks at and adds to the request's
/// context, then calls `next` for the rest of the chain, or answers (or throws) itself.
protocol GatewayMiddleware: Sendable {
    func handle(_ context: inout RequestContext, next: NextStep) async throws -> GatewayResponse
}

/// Middlewares in order, ending at an endpoint.
struct MiddlewareChain: Sendable {
    let middlewares: [any GatewayMiddleware]

    func respond(to context: inout RequestContext, endpoint: NextStep) async throws -> GatewayResponse {
        try await step(0, &context, endpoint)
    }

    private func step(_ index: Int, _ context: inout RequestContext, _ endpoint: NextStep) async throws -> GatewayResponse {
        guard index < middlewares.count else { return try await endpoint(&context) }
        return try await middlewares[index].handle(&context) { try await step(index + 1, &$0, endpoint) }
    }
}
