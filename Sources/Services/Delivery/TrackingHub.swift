import DroneDeliveryAPI
import Synchronization

/// Hands committed tracking events to the TrackDelivery streams watching the delivery.
/// In-process: every stream of one delivery is served by the replica that processes its
/// positions (see docs/services.md for what scaling out changes).
final class TrackingHub: Sendable {
    private struct Watchers {
        var next = 0
        var byDelivery: [String: [Int: AsyncStream<DeliveryV1.DeliveryTrackingEvent>.Continuation]] = [:]
    }
    private let watchers = Mutex(Watchers())

    /// A stream of the delivery's events from now on, and the token to stop watching.
    func watch(_ deliveryID: String) -> (stream: AsyncStream<DeliveryV1.DeliveryTrackingEvent>, token: Int) {
        let (stream, continuation) = AsyncStream<DeliveryV1.DeliveryTrackingEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let token = watchers.withLock { state -> Int in
            state.next += 1
            state.byDelivery[deliveryID, default: [:]][state.next] = continuation
            return state.next
        }
        return (stream, token)
    }

    func stopWatching(_ deliveryID: String, token: Int) {
        let continuation = watchers.withLock { state in
            let removed = state.byDelivery[deliveryID]?.removeValue(forKey: token)
            if state.byDelivery[deliveryID]?.isEmpty == true { state.byDelivery[deliveryID] = nil }
            return removed
        }
        continuation?.finish()
    }

    func publish(_ events: [DeliveryV1.DeliveryTrackingEvent]) {
        guard let first = events.first else { return }
        let targets = watchers.withLock { Array(($0.byDelivery[first.deliveryId] ?? [:]).values) }
        for continuation in targets {
            for event in events { continuation.yield(event) }
        }
    }
}
