import DroneDeliveryAPI
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Storage

/// Delivery History: a materialized view of Delivery's domain events, append-only, queried by
/// delivery and by owner and time range.
public struct DeliveryHistoryServiceLogic: DeliveryHistoryV1.DeliveryHistoryService.Handler {
    let store: any HistoryStore
    let logger: Logger
    public init(store: any HistoryStore, logger: Logger = Logger(label: "fabrikam.deliveryhistory")) {
        self.store = store
        self.logger = logger
    }

    public func getDeliveryHistory(_ request: DeliveryHistoryV1.GetDeliveryHistoryRequest, context: ServerContext) async throws -> DeliveryHistoryV1.GetDeliveryHistoryResponse {
        // A request that names an owner sees nothing of another owner's delivery.
        if !request.ownerId.isEmpty, let owner = try await store.owner(deliveryID: request.deliveryId), owner != request.ownerId {
            throw RPCError(.notFound, "delivery \(request.deliveryId) has no recorded history")
        }
        let offset = try PageToken.decode(request.pageToken)
        let size = try PageToken.size(request.pageSize)
        let events = try await store.events(deliveryID: request.deliveryId, offset: offset, limit: size + 1)
        var response = DeliveryHistoryV1.GetDeliveryHistoryResponse()
        response.deliveryId = request.deliveryId
        response.events = Array(events.prefix(size))
        if events.count > size { response.nextPageToken = PageToken.encode(offset: offset + size) }
        return response
    }

    public func listOwnerHistory(_ request: DeliveryHistoryV1.ListOwnerHistoryRequest, context: ServerContext) async throws -> DeliveryHistoryV1.ListOwnerHistoryResponse {
        // owner_id is required (a field rule); the time range is checked here (two fields).
        if let start = request.startTime, let end = request.endTime, end.secondsSince1970 < start.secondsSince1970 {
            throw RPCError(.invalidArgument, "end_time must not be before start_time")
        }
        let offset = try PageToken.decode(request.pageToken)
        let size = try PageToken.size(request.pageSize)
        let events = try await store.events(ownerID: request.ownerId, start: request.startTime?.secondsSince1970, end: request.endTime?.secondsSince1970,
                                            stages: request.stages, offset: offset, limit: size + 1)
        var response = DeliveryHistoryV1.ListOwnerHistoryResponse()
        response.events = Array(events.prefix(size))
        if events.count > size { response.nextPageToken = PageToken.encode(offset: offset + size) }
        return response
    }

    public func recordDeliveryEvent(_ request: DeliveryHistoryV1.RecordDeliveryEventRequest, context: ServerContext) async throws -> DeliveryHistoryV1.RecordDeliveryEventResponse {
        guard var event = request.event else { throw RPCError(.invalidArgument, "event is required") }
        // event_id, delivery_id, a defined stage and event_time are required (field rules).
        event.recordTime = .now
        let stored = try await store.append(event)
        var response = DeliveryHistoryV1.RecordDeliveryEventResponse()
        response.created = stored.created
        response.event = stored.event
        return response
    }

    /// Records one domain event from Delivery's stream; with tracing on, in a CONSUMER span under
    /// the PRODUCER span of Delivery's relay (the message's `traceparent`). While the store is
    /// unavailable the event waits, uncounted, for as long as that lasts; a store that refuses
    /// it gets the queue's retries, then the event is dead-lettered with the store's error
    /// (`Disposition.afterStoreFailure`).
    public func handleDeliveryEvent(_ message: ReceivedMessage) async -> Disposition {
        guard Tracing.recorder != nil, let parent = message.headers[MessageHeader.traceparent], RequestTrace.isValidTraceparent(parent) else {
            return await record(message)
        }
        var trace = CommonV1.TraceContext()
        trace.traceparent = parent
        trace.tracestate = message.headers[MessageHeader.tracestate] ?? ""
        trace.correlationId = message.headers[MessageHeader.correlationID] ?? ""
        let disposition = try? await Tracing.withSpan("process \(message.queue)", kind: .consumer, parent: trace,
                                                      attributes: [SpanAttribute("messaging.system", "fabrikam"), SpanAttribute("messaging.operation.type", "process"),
                                                                   SpanAttribute("messaging.destination.name", message.queue), SpanAttribute("messaging.message.id", message.id)]) {
            await record(message)
        }
        return disposition ?? .retry(after: .seconds(1))
    }

    func record(_ message: ReceivedMessage) async -> Disposition {
        guard let event = try? DeliveryV1.DeliveryEvent(serializedBytes: message.payload), !event.eventId.isEmpty, !event.deliveryId.isEmpty else {
            return .deadLetter(reason: "payload is not a fabrikam.dronedelivery.delivery.v1.DeliveryEvent with event_id and delivery_id")
        }
        var record = DeliveryHistoryV1.DeliveryHistoryEvent()
        record.eventId = event.eventId
        record.deliveryId = event.deliveryId
        record.owner = event.owner
        record.stage = event.stage
        record.eventTime = event.eventTime
        record.location = event.location
        record.droneId = event.droneId
        record.reason = event.reason
        record.sequence = event.sequence
        record.recordTime = .now
        record.correlationId = event.traceContext?.correlationId ?? message.headers[MessageHeader.correlationID] ?? ""
        do {
            _ = try await store.append(record)
            return .acknowledge
        } catch {
            let disposition = Disposition.afterStoreFailure(error, of: message)
            logger.warning(isStoreUnavailable(error) ? "history store unavailable: the event waits, uncounted" : "history store refused the event",
                           metadata: ["event": "\(event.eventId)", "delivery": "\(event.deliveryId)", "attempt": "\(message.deliveryCount)", "error": "\(error)"])
            return disposition
        }
    }
}
