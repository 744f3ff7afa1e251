import DroneDeliveryAPI

/// What a caller's key may do: ADMIN everything, DELIVERIES everything but an account's users
/// and keys, READ_ONLY the GET routes, and a tracking token (TRACKING) only the GET routes of
/// its one delivery. Refusals are 403; they depend on the key only, never on whether what the
/// request names exists.
struct AuthorizationMiddleware: GatewayMiddleware {
    let plans: [RoutePlan]
    let summaryPlan: RoutePlan

    func handle(_ context: inout RequestContext) async throws -> GatewayResponse? {
        guard let caller = context.caller else { return nil }  // a public route
        let plan: RoutePlan
        let name: String
        switch context.target {
        case .route(let route, _):
            plan = plans[route.id]
            name = route.name
        case .summary:
            plan = summaryPlan
            name = "GET /v1/deliveries/{delivery_id}/summary"
        case .unresolved:
            return nil
        }
        if caller.role == .tracking {
            guard plan.readsOneDelivery, let id = context.deliveryID, id == caller.deliveryScope else {
                throw GatewayError(403, 7, "this tracking token reads delivery \(caller.deliveryScope) only (status, tracking, history, summary)")
            }
        } else if !Self.permits(caller.role, plan.access) {
            throw GatewayError(403, 7, "an API key with role \(caller.role.protoName ?? "\(caller.role.rawValue)") cannot call \(name); it needs \(plan.access.roles)")
        }
        return nil
    }

    static func permits(_ role: AccountsV1.ApiKeyRole, _ access: RouteAccess) -> Bool {
        switch (role, access) {
        case (_, .public), (.admin, _): true
        case (.deliveries, .read), (.deliveries, .write): true
        case (.readOnly, .read): true
        default: false
        }
    }
}

/// Who may call a route.
enum RouteAccess: Sendable, Equatable {
    /// Anyone, without a key (configuration's `publicRoutes`).
    case `public`
    /// Keys with any role but TRACKING (GET routes); tracking tokens on their delivery's GET routes.
    case read
    /// ADMIN and DELIVERIES keys.
    case write
    /// ADMIN keys only (configuration's `adminRoutes`).
    case admin

    /// The roles that may call, for error messages.
    var roles: String {
        switch self {
        case .public: "no key"
        case .read: "API_KEY_ROLE_READ_ONLY, API_KEY_ROLE_DELIVERIES or API_KEY_ROLE_ADMIN"
        case .write: "API_KEY_ROLE_DELIVERIES or API_KEY_ROLE_ADMIN"
        case .admin: "API_KEY_ROLE_ADMIN"
        }
    }
}
