/// Answers what the gateway serves itself, outside `/v1/`: the OpenAPI document, the health
/// probe (503 while the gateway drains before stopping) and the tracking page; any other path
/// outside `/v1/` is 404. Also makes HEAD a GET (RFC 9110 section 9.3.2; the listeners leave
/// the body out).
struct StaticRoutesMiddleware: GatewayMiddleware {
    let openAPIDocument: [UInt8]
    let lifecycle: GatewayLifecycle

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        if context.request.method == "HEAD" { context.request.method = "GET" }
        let path = context.request.path
        if path.utf8.starts(with: "/v1/".utf8) { return nil }
        if context.request.method == "GET", ["/openapi.json", "/healthz", "/track", "/track/"].contains(path) { context.ownPage = path }
        switch (context.request.method, path) {
        case ("GET", "/openapi.json"):
            return GatewayResponse(status: 200, headers: [("content-type", "application/json")], body: .bytes(openAPIDocument))
        case ("GET", "/healthz"):
            if lifecycle.isDraining {
                return GatewayResponse(status: 503, headers: [("content-type", "text/plain")], body: .bytes(Array("draining\n".utf8)))
            }
            return GatewayResponse(status: 200, headers: [("content-type", "text/plain")], body: .bytes(Array("ok\n".utf8)))
        case ("GET", "/track"), ("GET", "/track/"):
            return GatewayResponse(status: 200, headers: [("content-type", "text/html; charset=utf-8")], body: .bytes(Array(trackingPage.utf8)))
        default:
            throw GatewayError(404, 5, "no route for \(context.request.method) \(path)")
        }
    }
}
