#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import DroneDeliveryAPI
import Foundation
import GRPCProtos
import Logging
import NIOCore
import RPC
import RPCServices
import Synchronization

/// Runs one service process: the RPC server (with health, reflection, tracing, call logging and
/// internal errors kept out of answers), the service's background loops, health that tells the
/// truth, and a graceful stop on SIGINT or SIGTERM.
///
/// Health (`grpc.health.v1`) is SERVING only while every store the service depends on is usable
/// (`StoreProbe`, checked every `FABRIKAM_HEALTH_INTERVAL_MS`, default 2000), and NOT_SERVING
/// from the moment a stop signal arrives: the service then keeps answering for
/// `FABRIKAM_DRAIN_MS` (default 1000) so that clients watching its health move away before it
/// stops accepting calls, then lets in-flight calls finish.
public struct ServiceHost {
    public let name: String
    public let port: Int
    /// The address the RPC listener binds: 127.0.0.1 by default, 0.0.0.0 in containers.
    public let listenHost: String
    public let logger: Logger
    /// Set by the host; the service may set more.
    public let health = HealthService()
    /// The process's metrics (`GET /metrics` on the admin port); services add their gauges.
    public let metrics = MetricsEndpoint()
    /// How long a stopping process keeps serving while its health says NOT_SERVING.
    public static let defaultDrainMilliseconds = 1000

    public init(name: String, port: Int, listenHost: String = "127.0.0.1") {
        self.name = name
        self.port = port
        self.listenHost = listenHost
        var logger = Logger(label: "fabrikam.\(name)")
        logger.logLevel = ProcessInfo.processInfo.environment["FABRIKAM_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        self.logger = logger
    }

    /// Serves `router` plus health and reflection until a signal arrives, running `background`
    /// alongside; on a signal, health turns NOT_SERVING, the process drains, background tasks are
    /// cancelled and in-flight calls finish.
    ///
    /// - Parameter stores: the SQLite files the service cannot work without (its store, the
    ///   broker); health is NOT_SERVING while one of them is unusable.
    public func serve(_ router: Router, background: [@Sendable () async -> Void] = [], stores: [StoreProbe] = []) async throws {
        var router = router
        let services = router.serviceNames
        health.register(in: &router)
        ReflectionService(files: grpcProtoFiles + droneDeliveryProtoFiles,
                          services: services + ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
            .register(in: &router)
        let healthState = ServingState(health: health, services: services)
        let firstProblem = await StoreProbe.firstProblem(stores)
        healthState.storesProblem(firstProblem, logger: logger)

        var callLogger = logger
        callLogger.logLevel = min(logger.logLevel, .info)
        let server = RPCServer(router: router, options: .defaults {
            $0.host = listenHost
            $0.port = port
            // Counted around the interceptors, so calls refused by one are counted with their code.
            $0.metrics = MetricsEndpoint.isEnabled ? RPCMetrics(side: .server) : nil
            $0.interceptors = [TracingServerInterceptor(), InternalErrorInterceptor(logger: logger), LoggingServerInterceptor(logger: callLogger)]
            $0.shutdownGracePeriod = .seconds(5)
            // FABRIKAM_TLS_CERT/KEY (and FABRIKAM_TLS_CLIENT_CA for mutual TLS); checked by runService.
            $0.tls = TLSEnvironment.current?.server
        }, logger: logger)
        let bound = try await bindOrExplain(host: listenHost, port: port, service: ServicePorts.Service(rawValue: name)) { try await server.start() }
        // The launcher and the tests wait for this line.
        metrics.addCollector {
            [MetricsEndpoint.Sample("fabrikam_rpc_server_connections", value: Double(server.connectionCount), help: "RPC connections open now.")]
        }
        await startMetrics(forPort: bound)
        print("\(name) listening on \(listenHost):\(bound)")
        fflush(nil)

        let environment = ProcessInfo.processInfo.environment
        let interval = Duration.milliseconds(environment["FABRIKAM_HEALTH_INTERVAL_MS"].flatMap { Int($0) } ?? 2000)
        let drain = Duration.milliseconds(environment["FABRIKAM_DRAIN_MS"].flatMap { Int($0) } ?? Self.defaultDrainMilliseconds)
        let hostLogger = logger
        await withTaskGroup(of: Void.self) { group in
            for task in background { group.addTask { await task() } }
            if !stores.isEmpty {
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        if Task.isCancelled { break }
                        healthState.storesProblem(await StoreProbe.firstProblem(stores), logger: hostLogger)
                    }
                }
            }
            await waitForTerminationSignal()
            hostLogger.info("stopping: NOT_SERVING, draining", metadata: ["drain_ms": "\(drain.components.seconds * 1000 + drain.components.attoseconds / 1_000_000_000_000_000)"])
            healthState.beginDraining()
            try? await Task.sleep(for: drain)
            group.cancelAll()
        }
        await server.shutdown()
        await Tracing.recorder?.shutdown()  // the last spans go out
        await metrics.stop()
    }

    /// Serves `metrics` on the admin port for a service on `port` (see `MetricsEndpoint`); a port
    /// that cannot be bound is logged, and the service goes on without it.
    public func startMetrics(forPort port: Int, host: String? = nil) async {
        do {
            guard let adminPort = try MetricsEndpoint.port(forServicePort: port) else { return }
            let bound = try await metrics.start(host: host ?? listenHost, port: adminPort)
            logger.info("metrics", metadata: ["address": "http://\(host ?? listenHost):\(bound)/metrics"])
        } catch {
            logger.error("no metrics endpoint", metadata: ["error": "\(error)", "moved_by": "\(MetricsEndpoint.portVariable)"])
        }
    }
}

/// The health of a running service: NOT_SERVING while a store is unusable or once it drains.
final class ServingState: Sendable {
    private let health: HealthService
    private let services: [String]
    private let state = Mutex<(draining: Bool, problem: String?)>((false, nil))

    init(health: HealthService, services: [String]) {
        self.health = health
        self.services = services
    }

    /// Records the stores' state (nil: all usable) and sets health accordingly, logging changes.
    func storesProblem(_ problem: String?, logger: Logger) {
        let (changed, draining) = state.withLock { state -> (Bool, Bool) in
            defer { state.problem = problem }
            return (state.problem != problem, state.draining)
        }
        guard !draining else { return }
        if changed {
            if let problem { logger.error("NOT_SERVING: a store is unusable", metadata: ["problem": "\(problem)"]) }
            else { logger.info("SERVING: every store is usable") }
        }
        set(problem == nil ? .serving : .notServing)
    }

    /// NOT_SERVING for good: the process is stopping.
    func beginDraining() {
        state.withLock { $0.draining = true }
        health.enterGracefulShutdown()
    }

    private func set(_ status: HealthService.Status) {
        for service in services { health.setStatus(status, for: service) }
        health.setStatus(status)
    }
}

/// Binds through `start`, turning "address already in use" into an error that names the port
/// and how to move it.
public func bindOrExplain(host: String = "127.0.0.1", port: Int, service: ServicePorts.Service?, isolation: isolated (any Actor)? = #isolation,
                          _ start: () async throws -> Int) async throws -> Int {
    do {
        return try await start()
    } catch let error as IOError where error.errnoCode == EADDRINUSE {
        var moves = "--port N or FABRIKAM_PORT=N for this process"
        if let service {
            moves += ", or \(ServicePorts.baseVariable)=N for all of them (this one is N + \(service.offset)"
                + (service == .gateway ? "; 8080 when it is unset)" : ")")
        }
        throw ConfigurationError("port \(port) on \(host) is already in use (another process listens on it, or holds it); move it with \(moves)")
    }
}

/// Runs a service's `main`: prints configuration errors plainly and exits 2 instead of crashing.
public func runService(_ body: () async throws -> Void) async {
    // A parent may have started us with signals blocked (Foundation's Process does): unblock
    // them, or SIGTERM would never stop the service.
    var all = sigset_t()
    sigfillset(&all)
    sigprocmask(SIG_UNBLOCK, &all, nil)
    do {
        if let problem = ServicePorts.checkEnvironment() { throw ConfigurationError(problem) }
        do {
            _ = try TLSEnvironment()
        } catch {
            throw ConfigurationError("\(error)")
        }
        try LogOutput.bootstrap(process: ProcessInfo.processInfo.processName)
        // Before any metric object exists: one made earlier would stay bound to no backend.
        _ = MetricsEndpoint.registry
        _ = try MetricsEndpoint.port(forServicePort: 0)  // a bad FABRIKAM_METRICS_PORT stops the process here
        // Spans, when FABRIKAM_OTLP_ENDPOINT or --otlp-endpoint names a collector: before any
        // server or client is made (their interceptors read it once), after the metrics registry.
        try Tracing.configure(serviceName: ProcessInfo.processInfo.processName)
        try await body()
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("configuration: \(error)\n".utf8))
        exit(2)
    } catch {
        FileHandle.standardError.write(Data("fatal: \(error)\n".utf8))
        exit(1)
    }
}

/// The data folder (created if missing) and the database file a service keeps in it.
public func databasePath(_ configuration: Configuration, file: String) throws -> String {
    let folder = configuration.string("data-dir", default: "data")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return (folder as NSString).appendingPathComponent(file)
}
