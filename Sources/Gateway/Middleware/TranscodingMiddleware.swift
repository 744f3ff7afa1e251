/// Builds a route's request message as JSON from the body, the path variables and the query
/// (`Transcoder`); errors name the field (400).
struct TranscodingMiddleware: GatewayMiddleware {
    let transcoder: Transcoder

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        if case .route(let route, let variables) = context.target {
            context.json = try transcoder.requestJSON(route: route, variables: variables, query: context.request.queryParameters,
                                                      body: context.request.body)
        }
        return nil
    }
}
