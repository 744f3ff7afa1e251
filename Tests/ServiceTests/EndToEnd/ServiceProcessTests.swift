#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRPCProtos
import RPC
import ServiceKit
import Synchronization
import Testing
import TestSupport

/// One service executable, started as `make run` starts it, on 127.0.0.1 with its own data folder.
final class ServiceProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    let dataDirectory: URL
    let log: URL
    let client: RPCClient

    init(_ executable: String, port: Int, environment: [String: String] = [:], arguments: [String] = []) throws {
        self.port = port
        dataDirectory = try makeTemporaryDirectory("service-process")
        log = dataDirectory.deletingLastPathComponent().appendingPathComponent("\(dataDirectory.lastPathComponent).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = repositoryRoot.appendingPathComponent(".build/debug/\(executable)")
        process.arguments = ["--port", String(port), "--data-dir", dataDirectory.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        client = RPCClient(host: "127.0.0.1", port: port)
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func start() async throws {
        try process.run()
        try await waitFor("\(process.executableURL!.lastPathComponent) to listen", timeout: .seconds(30)) {
            self.output.contains("listening on") || !self.process.isRunning
        }
        guard process.isRunning else { throw Failure("it exited: \(output)") }
    }

    /// The whole server's health, asked over `client` (or a fresh connection).
    ///
    /// The deadline is only a bound against a hang: tests run twelve at a time on two cores, where
    /// a call that should succeed can wait seconds before it even starts (a 3 s deadline was
    /// tight there).
    func health(fresh: Bool = false, timeout: Duration = .seconds(60)) async throws -> Grpc.Health.V1.HealthCheckResponse.ServingStatus {
        let rpc = fresh ? RPCClient(host: "127.0.0.1", port: port) : client
        defer { if fresh { Task { await rpc.close() } } }
        return try await Grpc.Health.V1.Health.Client(rpc).check(Grpc.Health.V1.HealthCheckRequest(), options: CallOptions(timeout: timeout)).status
    }

    func stop() async {
        await client.close()
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dataDirectory)
        try? FileManager.default.removeItem(at: log)
    }
}

extension EndToEndTests {
    @Suite("Health tells the truth: a real process with its store made unusable, and stopping", .serialized)
    struct HealthTruthTests {
        static let fastProbes = ["FABRIKAM_HEALTH_INTERVAL_MS": "200"]

        @Test("the store's folder removed: NOT_SERVING (the open file still works, but is one nobody will find again)")
        func storeFolderRemoved() async throws {
            let service = try ServiceProcess("package-service", port: try freePort(), environment: Self.fastProbes)
            try await service.start()
            #expect(try await service.health() == .serving)
            try FileManager.default.removeItem(at: service.dataDirectory)
            try await waitFor("NOT_SERVING", timeout: .seconds(15)) { try await service.health() == .notServing }
            #expect(service.output.contains("is gone"), "the log says why: \(service.output.suffix(500))")
            await service.stop()
        }

        @Test("the database locked by another process: NOT_SERVING while it holds the lock, SERVING again after")
        func databaseLocked() async throws {
            let service = try ServiceProcess("package-service", port: try freePort(), environment: Self.fastProbes)
            try await service.start()
            #expect(try await service.health() == .serving)
            // Python's sqlite3 (another SQLite, another process) takes the write lock and keeps it.
            let locker = Process()
            locker.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            locker.arguments = ["-c", """
                import sqlite3, sys, time
                c = sqlite3.connect(sys.argv[1], isolation_level=None)
                c.execute("BEGIN IMMEDIATE")
                print("locked", flush=True)
                time.sleep(60)
                """, service.dataDirectory.appendingPathComponent("package.sqlite").path]
            let pipe = Pipe()
            locker.standardOutput = pipe
            locker.standardError = FileHandle.nullDevice  // not the test's stderr, should it outlive a crashed run
            try locker.run()
            _ = pipe.fileHandleForReading.availableData  // "locked"
            try await waitFor("NOT_SERVING while locked", timeout: .seconds(15)) { try await service.health() == .notServing }
            locker.terminate()
            locker.waitUntilExit()
            try await waitFor("SERVING once released", timeout: .seconds(15)) { try await service.health() == .serving }
            #expect(service.output.contains("is locked by another connection"), "\(service.output.suffix(500))")
            await service.stop()
        }

        @Test("SIGTERM: NOT_SERVING at once, to a watcher and to a new connection, while it drains and still answers; then it exits")
        func drainsAfterSIGTERM() async throws {
            // The drain is long enough for the watcher's last update and a new connection's call to
            // be answered on a loaded machine (with 3 s, the call could come after the process
            // had exited). It is a fixed wait, so the test lasts that long.
            let service = try ServiceProcess("package-service", port: try freePort(),
                                             environment: Self.fastProbes.merging(["FABRIKAM_DRAIN_MS": "10000"]) { $1 })
            try await service.start()
            let watcher = RPCClient(host: "127.0.0.1", port: service.port)
            let firstUpdate = Atomic(false)
            let watched = Task {
                try await Grpc.Health.V1.Health.Client(watcher).watch(Grpc.Health.V1.HealthCheckRequest()) { updates in
                    var seen: [Grpc.Health.V1.HealthCheckResponse.ServingStatus] = []
                    for try await update in updates {
                        seen.append(update.status)
                        firstUpdate.store(true, ordering: .releasing)
                        if update.status == .notServing { break }
                    }
                    return seen
                }
            }
            try await waitFor("the service to serve", timeout: .seconds(30)) { try await service.health() == .serving }
            // The watcher has its first update before the signal (a fixed sleep here once let the
            // watch open only during the drain, so its first update was already NOT_SERVING).
            try await waitFor("the watcher's first update", timeout: .seconds(30)) { firstUpdate.load(ordering: .acquiring) }
            kill(service.process.processIdentifier, SIGTERM)
            let seen = try await watched.value
            #expect(seen.first == .serving && seen.last == .notServing, "\(seen)")
            // Still answering while it drains, and saying it should not be sent new work.
            #expect(try await service.health(fresh: true, timeout: .seconds(8)) == .notServing)
            try await waitFor("the process to exit", timeout: .seconds(40)) { !service.process.isRunning }
            await watcher.close()
            await service.stop()
        }
    }

    @Suite("Ports: defaults outside the ephemeral range, one table, a port in use named with the variable that moves it", .serialized)
    struct PortTests {
        @Test("every default port is outside this machine's ephemeral port range")
        func defaultsOutsideTheEphemeralRange() throws {
            let range = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
                .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
            try #require(range.count == 2)
            for service in ServicePorts.Service.allCases {
                let port = ServicePorts.port(of: service, environment: [:])
                #expect(!(range[0]...range[1]).contains(port), "\(service.name): \(port) is in \(range)")
            }
            #expect(ServicePorts.port(of: .gateway, environment: [:]) == 8080)
            #expect(ServicePorts.port(of: .supervisor, environment: ["FABRIKAM_PORT_BASE": "20000"]) == 20007)
            #expect(ServicePorts.port(of: .gateway, environment: ["FABRIKAM_PORT_BASE": "20000"]) == 20009)
            #expect(ServicePorts.checkEnvironment(["FABRIKAM_PORT_BASE": "65530"]) != nil)
        }

        @Test("a port in use stops the service with exit status 2, naming the port and FABRIKAM_PORT_BASE")
        func portInUse() async throws {
            let port = try freePort()
            let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(holder) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(bound == 0 && listen(holder, 1) == 0)
            let service = try ServiceProcess("package-service", port: port)
            try service.process.run()
            service.process.waitUntilExit()
            #expect(service.process.terminationStatus == 2)
            #expect(service.output.contains("port \(port) on 127.0.0.1 is already in use"), "\(service.output)")
            #expect(service.output.contains("FABRIKAM_PORT_BASE"), "\(service.output)")
            await service.stop()
        }
    }
}
