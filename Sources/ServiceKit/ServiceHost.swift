#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import DroneDeliveryAPI
import Foundation
import GRPCProtos
import Logging
import RPC
import RPCServices
import Synchronization

/// Runs one service process: the RPC server (with health, reflection, tracing and call logging),
/// the service's background loops, and a graceful stop on SIGINT or SIGTERM.
public struct ServiceHost {
    public let name: String
    public let port: Int
    /// The address the RPC listener binds: 127.0.0.1 by default, 0.0.0.0 in containers.
    public let listenHost: String
    public let logger: Logger
    /// Set by the service; `serving` once everything it needs is open.
    public let health = HealthService()

    public init(name: String, port: Int, listenHost: String = "127.0.0.1") {
        self.name = name
        self.port = port
        self.listenHost = listenHost
        var logger = Logger(label: "fabrikam.\(name)")
        logger.logLevel = ProcessInfo.processInfo.environment["FABRIKAM_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        self.logger = logger
    }

    /// Serves `router` plus health and reflection until a signal arrives, running `background`
    /// alongside; on a signal, background tasks are cancelled and in-flight calls finish.
    public func serve(_ router: Router, background: [@Sendable () async -> Void] = []) async throws {
        var router = router
        let services = router.serviceNames
        health.register(in: &router)
        ReflectionService(files: grpcProtoFiles + droneDeliveryProtoFiles,
                          services: services + ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
            .register(in: &router)
        for service in services { health.setStatus(.serving, for: service) }
        health.setStatus(.serving)

        var callLogger = logger
        callLogger.logLevel = min(logger.logLevel, .info)
        let server = RPCServer(router: router, options: .defaults {
            $0.host = listenHost
            $0.port = port
            $0.interceptors = [TracingServerInterceptor(), LoggingServerInterceptor(logger: callLogger)]
            $0.shutdownGracePeriod = .seconds(5)
        }, logger: logger)
        let bound = try await server.start()
        // The launcher and the tests wait for this line.
        print("\(name) listening on \(listenHost):\(bound)")
        fflush(nil)

        await withTaskGroup(of: Void.self) { group in
            for task in background { group.addTask { await task() } }
            await waitForTerminationSignal()
            logger.info("stopping")
            health.enterGracefulShutdown()
            group.cancelAll()
        }
        await server.shutdown()
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
