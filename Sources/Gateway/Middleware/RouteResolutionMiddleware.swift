/// Refuses bodies over the limit (413) and finds what the path names: a route of the services
/// (404 when none; 405 with `Allow` when the path exists for other methods) or a delivery's
/// summary.
struct RouteResolutionMiddleware: GatewayMiddleware {
    let routes: RouteTable
    let maxBodyBytes: Int

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        let request = context.request
        if request.bodyLimitExceeded || request.body.count > maxBodyBytes {
            throw GatewayError(413, 8, "the request body is larger than the limit of \(maxBodyBytes) bytes")
        }
        if request.method == "GET", let deliveryID = try SummaryAggregator.match(request.path) {
            context.target = .summary(deliveryID: deliveryID)
            return nil
        }
        switch routes.match(method: request.method, path: request.path) {
        case .found(let route, let variables):
            context.target = .route(route, variables: variables)
        case .undecodable(_, let field, let raw):
            throw GatewayError(400, 3, "the path's value for \(field), \"\(raw)\", is not valid: a malformed %XX escape or bytes that are not UTF-8")
        case .notFound:
            throw GatewayError(404, 5, "no route for \(request.method) \(request.path)")
        case .methodNotAllowed(let allowed):
            var error = GatewayError(405, 12, "\(request.method) is not allowed on \(request.path); allowed: \(allowed.joined(separator: ", "))")
            error.headers = [("allow", allowed.joined(separator: ", "))]
            throw error
        }
        return nil
    }
}
