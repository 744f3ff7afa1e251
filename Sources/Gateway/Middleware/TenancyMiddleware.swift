/// Tenant isolation (`Tenancy`): applies the route's `TenancyPlan` to the request message, and
/// checks a summary's delivery against the caller.
struct TenancyMiddleware: GatewayMiddleware {
    let tenancy: Tenancy
    let plans: [RoutePlan]

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        guard let caller = context.caller else { return nil }  // a public route
        switch context.target {
        case .route(let route, _):
            context.deliveryPlace = try await tenancy.apply(plans[route.id].tenancy, to: &context.json, caller: caller, options: context.options)
        case .summary(let deliveryID):
            context.deliveryPlace = try await tenancy.checkDelivery(deliveryID, owner: caller.accountID, options: context.options)
        case .unresolved:
            break
        }
        return nil
    }
}
