import Synchronization

/// Whether the gateway is draining before it stops: its health probe then says so (503) while
/// requests are still answered, so a load balancer takes it out before the listener closes.
final class GatewayLifecycle: Sendable {
    private let draining = Atomic<Bool>(false)

    var isDraining: Bool { draining.load(ordering: .relaxed) }

    func beginDraining() { draining.store(true, ordering: .relaxed) }
}
