import DroneDeliveryAPI
import ProtobufKit
import RPC

/// One request on its way through the gateway's middlewares: the request, and what the steps
/// before the current one found out (the route, the caller, the upstream call's options, the
/// request message).
struct RequestContext: Sendable {
    /// What a request's path names.
    enum Target: Sendable {
        /// Not worked out yet (only the steps before routing see this).
        case unresolved
        /// A binding of a service method, with its path variables.
        case route(Route, variables: [String: String])
        /// `GET /v1/deliveries/{id}/summary`, which joins several services.
        case summary(deliveryID: String)
    }

    var request: GatewayRequest
    /// The request's id (the client's `x-request-id`, or a new one): in the answer, the access
    /// log, the upstream call's metadata and every internal error's message.
    let requestID: String
    var target: Target = .unresolved
    /// Who called; nil for a public route.
    var caller: Caller?
    /// The upstream call's deadline and metadata.
    var options = CallOptions()
    /// The request message as JSON (routes only), from the transcoding step on.
    var json: JSONValue = .object([])
    /// Where the route's own delivery is, once Tenancy has checked it.
    var deliveryPlace: Tenancy.DeliveryPlace?
    /// The path of the gateway's own page that answered (`/healthz`, ...): a fixed set, so it
    /// can name the route in metrics and spans.
    var ownPage: String?

    init(request: GatewayRequest, requestID: String) {
        self.request = request
        self.requestID = requestID
    }

    /// The delivery the request is about, when its path names one.
    var deliveryID: String? {
        switch target {
        case .route(_, let variables): variables["delivery_id"]
        case .summary(let id): id
        case .unresolved: nil
        }
    }
}
