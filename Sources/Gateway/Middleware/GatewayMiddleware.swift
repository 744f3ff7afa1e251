/// One step of the gateway's request handling (routing, authentication, limits, tenancy, ...):
/// it looks at and adds to the request's context, then lets the next step go on (returns nil),
/// or answers (returns a response) or throws itself. No step does anything after the steps that
/// follow it, so the chain is a loop rather than nested `next` closures: each nested level cost
/// an async frame, a closure context and an executor check per request.
protocol GatewayMiddleware: Sendable {
    func handle(_ context: inout RequestContext) async throws -> GatewayResponse?
}

/// Middlewares in order, ending at an endpoint.
struct MiddlewareChain: Sendable {
    let middlewares: [any GatewayMiddleware]

    func respond(to context: inout RequestContext, endpoint: (inout RequestContext) async throws -> GatewayResponse) async throws -> GatewayResponse {
        for middleware in middlewares {
            if let answer = try await middleware.handle(&context) { return answer }
        }
        return try await endpoint(&context)
    }
}
