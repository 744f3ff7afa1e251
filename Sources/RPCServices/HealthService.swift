import GRPCProtos
import ProtobufKit
import RPC
import Synchronization

/// grpc.health.v1.Health: the application sets a status per service; clients Check it, List
/// all, or Watch one and get every change (doc/health-checking.md of the gRPC project).
///
/// The empty service name "" stands for the whole server.
public final class HealthService: Sendable {
    public typealias Status = Grpc.Health.V1.HealthCheckResponse.ServingStatus
    typealias Methods = Grpc.Health.V1.Health.Method

    private struct State {
        var statuses: [String: Status] = ["": .serving]
        var watchers: [String: [Int: AsyncStream<Status>.Continuation]] = [:]
        var nextWatcher = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Sets a service's status and tells its watchers.
    public func setStatus(_ status: Status, for service: String = "") {
        let watchers = state.withLock { state -> [AsyncStream<Status>.Continuation] in
            state.statuses[service] = status
            return Array(state.watchers[service, default: [:]].values)
        }
        for watcher in watchers { watcher.yield(status) }
    }

    /// Marks every service NOT_SERVING (for example when shutting down).
    public func enterGracefulShutdown() {
        let services = state.withLock { Array($0.statuses.keys) }
        for service in services { setStatus(.notServing, for: service) }
    }

    public func status(of service: String) -> Status? { state.withLock { $0.statuses[service] } }

    /// Service names with a Watch open now (tests).
    var watchedServiceCount: Int { state.withLock { $0.watchers.count } }

    /// Adds the Health methods to `router`.
    public func register(in router: inout Router) {
        router.unary(Methods.Check.self) { [self] request, _ in
            guard let status = self.status(of: request.service) else {
                throw RPCError(.notFound, "unknown service \(request.service)")
            }
            var response = Grpc.Health.V1.HealthCheckResponse()
            response.status = status
            return response
        }
        router.unary(Methods.List.self) { [self] _, _ in
            var response = Grpc.Health.V1.HealthListResponse()
            for (service, status) in state.withLock({ $0.statuses }) {
                var entry = Grpc.Health.V1.HealthCheckResponse()
                entry.status = status
                response.statuses[service] = entry
            }
            return response
        }
        router.serverStreaming(Methods.Watch.self) { [self] request, writer, _ in
            // The current status first (SERVICE_UNKNOWN for a service not set yet), then each change.
            let (updates, continuation) = AsyncStream<Status>.makeStream(bufferingPolicy: .bufferingNewest(1))
            let id = state.withLock { state -> Int in
                let id = state.nextWatcher
                state.nextWatcher += 1
                state.watchers[request.service, default: [:]][id] = continuation
                continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
                return id
            }
            defer {
                // The service's entry goes with its last watcher: a client may watch any name
                // (SERVICE_UNKNOWN), and empty entries would pile up, one per name ever watched.
                state.withLock { state in
                    state.watchers[request.service]?.removeValue(forKey: id)
                    if state.watchers[request.service]?.isEmpty == true { state.watchers[request.service] = nil }
                }
            }
            var last: Status?
            for await status in updates {
                if status == last { continue }
                last = status
                var response = Grpc.Health.V1.HealthCheckResponse()
                response.status = status
                try await writer.write(response)
            }
        }
    }
}
