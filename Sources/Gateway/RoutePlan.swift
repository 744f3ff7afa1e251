import ProtobufKit

/// What the gateway needs to know of one route, worked out once when it starts.
struct RoutePlan: Sendable {
    /// Who may call it.
    var access: RouteAccess
    /// A GET of one delivery, named in the path (`{delivery_id}`): what a tracking token may read.
    var readsOneDelivery: Bool
    /// The tenancy checks of its request's ids.
    var tenancy: TenancyPlan
    /// The JSON name of the request's top-level `request_id` on a POST: where `Idempotency-Key` goes.
    var requestIDField: String?
    /// The response has `status_path` (an accepted asynchronous operation: 202 + Location).
    var hasStatusPath: Bool
    /// The response has `created` (create-or-replace: 201 the first time, 204 after).
    var hasCreated: Bool
    /// `"jsonName":` of the route's `response_body` field (nil: the whole response), and of the
    /// two fields above, for `Transcoder.member`.
    var responseBodyKey: [UInt8]?
    var statusPathKey: [UInt8]
    var createdKey: [UInt8]
    /// What the route does for a delivery that Delivery does not know yet but that is on
    /// Ingestion's queue.
    var queued: QueuedHandling
    /// A stream that a client can resume (its request has `after_sequence`, its messages
    /// `sequence`): as Server-Sent Events each message carries its sequence as the event's
    /// `id:`, and a `Last-Event-ID` header sets `after_sequence`, which is how EventSource (and
    /// any SSE client) picks up where a dropped stream left off, on any gateway replica.
    var resume: StreamResume?

    init(route: Route, configuration: GatewayConfiguration, transcoder: Transcoder) throws {
        let schema = transcoder.schema
        let output = schema.messages[route.method.outputType]
        let input = schema.messages[route.method.inputType]
        if configuration.publicRoutes.contains(route.name) {
            access = .public
        } else if configuration.adminRoutes.contains(route.name) {
            access = .admin
        } else {
            access = route.httpMethod == "GET" ? .read : .write
        }
        readsOneDelivery = route.httpMethod == "GET" && route.template.boundFields.contains("delivery_id")
        tenancy = try TenancyPlan(messageName: route.method.inputType, schema: schema)
        requestIDField = route.httpMethod == "POST" ? input?.field(named: "request_id")?.jsonName : nil
        hasStatusPath = output?.field(named: "status_path") != nil
        hasCreated = output?.field(named: "created") != nil
        responseBodyKey = route.responseBody.isEmpty ? nil : transcoder.memberKey(route.responseBody, type: route.method.outputType)
        statusPathKey = transcoder.memberKey("status_path", type: route.method.outputType)
        createdKey = transcoder.memberKey("created", type: route.method.outputType)
        // A delivery's status and its tracking stream also know a delivery still on the queue.
        let answersStatus = !route.responseBody.isEmpty
            && output?.field(named: route.responseBody)?.typeName == "fabrikam.dronedelivery.delivery.v1.DeliveryStatus"
        if answersStatus && tenancy.deliveryPath != nil {
            queued = .reportStatus
        } else if route.method.serverStreaming && tenancy.deliveryPath != nil {
            queued = .waitForSchedule
        } else {
            queued = .none
        }
        if route.method.serverStreaming, let after = input?.field(named: "after_sequence"), output?.field(named: "sequence") != nil {
            resume = StreamResume(afterSequenceField: after.jsonName, protoName: after.name,
                                  sequenceKey: transcoder.memberKey("sequence", type: route.method.outputType))
        } else {
            resume = nil
        }
    }

    /// `GET /v1/deliveries/{delivery_id}/summary` (not a route of a service: it joins several).
    static let summary = RoutePlan(access: .read, readsOneDelivery: true)

    private init(access: RouteAccess, readsOneDelivery: Bool) {
        self.access = access
        self.readsOneDelivery = readsOneDelivery
        tenancy = TenancyPlan()
        requestIDField = nil
        hasStatusPath = false
        hasCreated = false
        responseBodyKey = nil
        statusPathKey = []
        createdKey = []
        queued = .none
        resume = nil
    }
}

/// See `RoutePlan.resume`.
struct StreamResume: Sendable {
    /// The request field that `Last-Event-ID` sets: its JSON name and its proto name.
    var afterSequenceField: String
    var protoName: String
    /// `"sequence":` of the stream's message, for `Transcoder.member`.
    var sequenceKey: [UInt8]

    /// The request with `after_sequence` from a `Last-Event-ID` header (it wins over the same
    /// field in the query: the browser resends the URL it first opened).
    func resumed(_ json: JSONValue, lastEventID: String) throws -> JSONValue {
        guard let sequence = Int64(lastEventID), sequence >= 0 else {
            throw GatewayError(400, 3, "Last-Event-ID \"\(lastEventID)\" is not an event id of this stream (the sequence number of an event)")
        }
        guard case .object(var members) = json else { return json }
        members.removeAll { $0.key == afterSequenceField || $0.key == protoName }
        members.append(JSONMember(afterSequenceField, .string(String(sequence))))
        return .object(members)
    }

    /// The sequence of a stream message whose JSON is `body` (nil when it has none).
    func sequence(of body: [UInt8], transcoder: Transcoder) -> Int64? {
        var value = transcoder.member(key: sequenceKey, of: body)
        value.removeAll { $0 == UInt8(ascii: "\"") }  // int64 is a JSON string
        return Int64(String(decoding: value, as: UTF8.self))
    }

    /// `id: <sequence>` for an event whose message JSON is `body` (nothing when it has none).
    func idLine(_ body: [UInt8], transcoder: Transcoder) -> [UInt8] {
        guard let sequence = sequence(of: body, transcoder: transcoder) else { return [] }
        return Array("id: \(sequence)\n".utf8)
    }
}

/// See `RoutePlan.queued`.
enum QueuedHandling: Sendable {
    /// Nothing: Delivery's 404 stands (routes of Ingestion go ahead: they take queued deliveries).
    case none
    /// The status route: answer from Ingestion (requested, or failed when dead-lettered).
    case reportStatus
    /// The tracking stream: wait for Workflow to schedule the delivery, then stream it.
    case waitForSchedule
}
