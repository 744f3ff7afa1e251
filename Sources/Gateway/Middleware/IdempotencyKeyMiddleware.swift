/// `Idempotency-Key` on a POST whose request has a `request_id` (creating a delivery,
/// registering a business) becomes that request id: a retry with the same key gets the first
/// answer, and the services refuse the same key with a different request (409). On other
/// routes the header is not needed and is ignored: they are idempotent by their own ids.
struct IdempotencyKeyMiddleware: GatewayMiddleware {
    let plans: [RoutePlan]

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        guard case .route(let route, _) = context.target, let field = plans[route.id].requestIDField,
              let key = context.request.header("idempotency-key") else { return nil }
        guard (1...128).contains(key.utf8.count), key.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7e }) else {
            throw GatewayError(400, 3, "Idempotency-Key must be 1 to 128 visible ASCII characters")
        }
        // A request id of another type is refused, not overwritten: the key must not make a body
        // that is not valid JSON for its message valid (`"requestId": {}` was answered 201).
        if let present = try idMember(context.json, [field]), !present.isEmpty, present != key {
            throw GatewayError(400, 3, "Idempotency-Key \"\(key)\" and the body's \(field) \"\(present)\" differ; send one of them")
        }
        try setMember(&context.json, path: [field], value: .string(key), append: false)
        return nil
    }
}
