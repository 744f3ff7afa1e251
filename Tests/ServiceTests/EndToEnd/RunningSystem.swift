#if canImport(Glibc)
import Glibc
#endif
import DroneDeliveryAPI
import Foundation
import RPC
import ServiceKit
import Testing
import TestSupport

/// The whole system, started the way a user starts it (`tools/run.sh`), on free ports under a
/// temporary data folder. Services can be killed and started again (`tools/run-service.sh`).
final class RunningSystem: @unchecked Sendable {
    /// The processes, in the order of their ports (`ServicePorts`, the one table of them).
    static let services = ServicePorts.Service.allCases.map(\.name)

    let dataDirectory: URL
    let portBase: Int
    let environment: [String: String]
    private let launcher: Process
    private var restarted: [String: Process] = [:]
    private var clients: [String: RPCClient] = [:]
    private let lock = NSLock()

    /// Starts every service; `settings` are FABRIKAM_* variables (flags) on top of fast test defaults.
    init(_ settings: [String: String] = [:]) async throws {
        dataDirectory = try makeTemporaryDirectory("fabrikam-e2e")
        portBase = try Self.freePortBase()
        var environment = ProcessInfo.processInfo.environment
        // The background tier at the services' own priority: these suites share the machine with
        // the other suites' servers, which are not of this system and run at normal priority, so
        // a Workflow at nice 19 would wait on them (run-service.sh; bench-scaled measures it).
        let defaults = ["FABRIKAM_TIME_SCALE": "60", "FABRIKAM_TICK_MS": "200", "FABRIKAM_LEASE_SECONDS": "3",
                        "FABRIKAM_STEP_ATTEMPTS": "4", "FABRIKAM_STEP_BACKOFF_MS": "100", "FABRIKAM_DRONES": "6",
                        "FABRIKAM_BACKGROUND_NICE": "0"]
        environment.merge(defaults) { $1 }
        environment.merge(settings) { $1 }
        environment["FABRIKAM_PORT_BASE"] = String(portBase)
        environment["FABRIKAM_DATA_DIR"] = dataDirectory.path
        environment["FABRIKAM_BIN_DIR"] = repositoryRoot.appendingPathComponent(".build/debug").path
        self.environment = environment
        launcher = Process()
        launcher.executableURL = URL(fileURLWithPath: "/bin/bash")
        launcher.arguments = [repositoryRoot.appendingPathComponent("tools/run.sh").path, "--no-build"]
        launcher.environment = environment
        let output = dataDirectory.appendingPathComponent("launcher.log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        launcher.standardOutput = handle
        launcher.standardError = handle
        try launcher.run()
        try await waitFor("the system to start", timeout: .seconds(60)) {
            (try? String(contentsOf: output, encoding: .utf8))?.contains("system up") == true || !self.launcher.isRunning
        }
        guard launcher.isRunning else { throw Failure("run.sh exited: \((try? String(contentsOf: output, encoding: .utf8)) ?? "")") }
    }

    func port(_ service: String) -> Int { ServicePorts.port(of: ServicePorts.Service(rawValue: service)!, base: portBase) }

    func client(_ service: String) -> RPCClient {
        lock.lock(); defer { lock.unlock() }
        if let client = clients[service] { return client }
        let client = RPCClient(host: "127.0.0.1", port: port(service))
        clients[service] = client
        return client
    }

    var ingestion: IngestionV1.IngestionService.Client { .init(client("ingestion")) }
    var delivery: DeliveryV1.DeliveryService.Client { .init(client("delivery")) }
    var history: DeliveryHistoryV1.DeliveryHistoryService.Client { .init(client("deliveryhistory")) }
    var scheduler: DroneSchedulerV1.DroneSchedulerService.Client { .init(client("dronescheduler")) }
    var packages: PackageV1.PackageService.Client { .init(client("package")) }
    var workflow: WorkflowV1.WorkflowService.Client { .init(client("workflow")) }
    var supervisor: SupervisorV1.SupervisorService.Client { .init(client("supervisor")) }
    var accounts: AccountsV1.AccountsService.Client { .init(client("accounts")) }

    /// Sends `signal` to a running service and waits until it has exited.
    func kill(_ service: String, signal: Int32 = SIGKILL) async throws {
        let pid: pid_t
        if let process = restarted[service], process.isRunning {
            pid = process.processIdentifier
        } else {
            let text = try String(contentsOf: dataDirectory.appendingPathComponent("pids/\(service).pid"), encoding: .utf8)
            pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))!
        }
        Glibc.kill(pid, signal)
        try await waitFor("\(service) to exit", timeout: .seconds(15)) { Glibc.kill(pid, 0) != 0 || Self.isZombie(pid) }
    }

    /// Starts a service again (as `tools/run-service.sh` does) and waits until it listens.
    func start(_ service: String) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("tools/run-service.sh").path, service]
        process.environment = environment
        let log = dataDirectory.appendingPathComponent("logs/\(service)-restarted.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        restarted[service] = process
        try await waitFor("\(service) to listen again", timeout: .seconds(30)) {
            (try? String(contentsOf: log, encoding: .utf8))?.contains("listening on") == true
        }
    }

    /// Stops everything this started and removes the data folder.
    func stop() async {
        for client in clients.values { await client.close() }
        // SIGTERM each service (a graceful stop), then SIGKILL the launcher: a shell started by
        // Foundation's Process has its signals blocked and would not run its trap.
        var pids = restarted.values.filter(\.isRunning).map(\.processIdentifier)
        for service in Self.services {
            if let text = try? String(contentsOf: dataDirectory.appendingPathComponent("pids/\(service).pid"), encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { pids.append(pid) }
        }
        for pid in pids { Glibc.kill(pid, SIGTERM) }
        try? await waitFor("services to stop", timeout: .seconds(15)) { pids.allSatisfy { Glibc.kill($0, 0) != 0 || Self.isZombie($0) } }
        for pid in pids { Glibc.kill(pid, SIGKILL) }
        Glibc.kill(launcher.processIdentifier, SIGKILL)
        try? await waitFor("the launcher to exit", timeout: .seconds(5)) { !self.launcher.isRunning }
        try? FileManager.default.removeItem(at: dataDirectory)
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first) == "Z"
    }

    /// Ten consecutive free ports on 127.0.0.1 (nine services and the gateway).
    static func freePortBase() throws -> Int {
        for _ in 0..<50 {
            // Below Linux's ephemeral range (32768-60999): a port in it can be taken, between this
            // check and the bind, as the local port of some outgoing connection.
            let base = Int.random(in: 12_000...32_000)
            // The RPC ports and the metrics ports 100 above them (MetricsEndpoint).
            if (0..<services.count).allSatisfy({ portIsFree(base + $0) && portIsFree(base + MetricsEndpoint.defaultPortOffset + $0) }) { return base }
        }
        throw Failure("no free port range found")
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 100 ms until it holds; fails after `timeout` naming what it waited for.
func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw Failure("timed out after \(timeout) waiting for \(what)")
}

/// Every end-to-end suite runs inside this one, one test at a time: each test starts the whole
/// system (ten processes), and two at once on this two-core machine would only measure contention.
@Suite("End to end", .serialized)
struct EndToEndTests {}
