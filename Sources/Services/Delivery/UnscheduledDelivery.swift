import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit

/// A delivery Delivery has not heard of, as a cancel or a failed saga's compensation describes it
/// (from the delivery's create request), so that its end can be recorded for its owner.
///
/// What is recorded is a `Delivery` that keeps that message's field rules: its id, owner and
/// both locations. It has no drone (none was assigned before it was scheduled, which is why
/// `drone_id` is not a field rule). A request without a location cannot be recorded so: it is
/// INVALID_ARGUMENT naming the missing field (delivery.proto, MarkDeliveryFailedRequest and
/// CancelDeliveryRequest, says why not NOT_FOUND or a record without it).
struct UnscheduledDelivery: Sendable {
    var owner: CommonV1.Owner
    var pickupLocation: CommonV1.Location?
    var dropoffLocation: CommonV1.Location?

    /// The delivery to record, created `now`.
    func delivery(id: String, at now: Timestamp) throws -> DeliveryV1.Delivery {
        let missing = [("pickup_location", pickupLocation), ("dropoff_location", dropoffLocation)].filter { $0.1 == nil }.map(\.0)
        if !missing.isEmpty {
            var error = RPCError(.invalidArgument, "delivery \(id) is not known here: recording it for its owner needs \(missing.joined(separator: " and "))")
            for field in missing {
                try? error.addFieldViolation(field, "value is required when the delivery was never scheduled (owner is set)")
            }
            throw error
        }
        var delivery = DeliveryV1.Delivery()
        delivery.deliveryId = id
        delivery.owner = owner
        delivery.pickupLocation = pickupLocation
        delivery.dropoffLocation = dropoffLocation
        delivery.createTime = now
        return delivery
    }
}
