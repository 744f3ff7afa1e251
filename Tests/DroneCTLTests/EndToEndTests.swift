#if canImport(Glibc)
import Glibc
#endif
import DroneCTLCommands
import Foundation
import Testing
import TestSupport

/// Every RPC of every service dronectl has a command for, called through dronectl against the
/// whole running system (started once, as `make run` starts it), with the same JSON over both
/// doors where a method has an HTTP route. The last check fails when a method has no call here.
@Suite("dronectl end to end", .serialized)
struct EndToEndTests {
    /// The system started by tools/run.sh on free ports, with its data in a temporary folder.
    final class System {
        let launcher = Process()
        let data: URL
        let portBase: Int

        init() throws {
            data = try makeTemporaryDirectory("dronectl-e2e")
            portBase = try Self.freePortBase()
            var environment = ProcessInfo.processInfo.environment
            environment.merge(["FABRIKAM_TIME_SCALE": "60", "FABRIKAM_TICK_MS": "200", "FABRIKAM_LEASE_SECONDS": "3",
                               "FABRIKAM_STEP_ATTEMPTS": "4", "FABRIKAM_STEP_BACKOFF_MS": "100", "FABRIKAM_DRONES": "6",
                               // Normal priority for the background tier: other suites' servers share the machine.
                               "FABRIKAM_BACKGROUND_NICE": "0",
                               "FABRIKAM_PORT_BASE": String(portBase), "FABRIKAM_DATA_DIR": data.path,
                               "FABRIKAM_BIN_DIR": repositoryRoot.appendingPathComponent(".build/debug").path]) { $1 }
            launcher.executableURL = URL(fileURLWithPath: "/bin/bash")
            launcher.arguments = [repositoryRoot.appendingPathComponent("tools/run.sh").path, "--no-build"]
            launcher.environment = environment
            let log = data.appendingPathComponent("launcher.log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            launcher.standardOutput = handle
            launcher.standardError = handle
            try launcher.run()
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline {
                if (try? String(contentsOf: log, encoding: .utf8))?.contains("system up") == true { return }
                if !launcher.isRunning { break }
                usleep(100_000)
            }
            stop()
            throw StartFailure(what: "tools/run.sh", output: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }

        func stop() {
            var pids: [pid_t] = []
            for name in ["accounts", "package", "dronescheduler", "delivery", "deliveryhistory", "ingestion", "workflow", "supervisor", "simulator", "gateway"] {
                if let text = try? String(contentsOf: data.appendingPathComponent("pids/\(name).pid"), encoding: .utf8),
                   let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { pids.append(pid) }
            }
            for pid in pids { kill(pid, SIGTERM) }
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline, pids.contains(where: { kill($0, 0) == 0 && !Self.isZombie($0) }) { usleep(100_000) }
            for pid in pids { kill(pid, SIGKILL) }
            kill(launcher.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(at: data)
        }

        static func isZombie(_ pid: pid_t) -> Bool {
            ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first) == "Z"
        }

        /// Ten consecutive free ports below the ephemeral range.
        static func freePortBase() throws -> Int {
            for _ in 0..<50 {
                let base = Int.random(in: 12_000...32_000)
                if (0..<10).allSatisfy({ portIsFree(base + $0) }) { return base }
            }
            throw StartFailure(what: "ten free ports", output: "")
        }
    }

    /// Runs dronectl and records which method each generated command called.
    final class Calls {
        var dronectl = Dronectl()
        var called: Set<String> = []

        @discardableResult
        func run(_ arguments: [String], expect status: Int32 = 0, input: String? = nil,
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> Dronectl.Result {
            let result = try dronectl.run(arguments, input: input)
            #expect(result.status == status, "dronectl \(arguments.joined(separator: " ")):\n\(result)", sourceLocation: sourceLocation)
            if arguments.count >= 2 { called.insert(arguments[0] + " " + arguments[1]) }
            return result
        }

        /// The one JSON object a call printed.
        func json(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
            let result = try run(arguments, sourceLocation: sourceLocation)
            return (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any] ?? [:]
        }

        /// The same call over gRPC and over HTTP prints the same JSON.
        func sameOverBothDoors(_ arguments: [String], grpcExtra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let grpc = try run(arguments + grpcExtra, sourceLocation: sourceLocation)
            let http = try run(arguments + ["--transport", "http"], sourceLocation: sourceLocation)
            #expect(!grpc.output.isEmpty, sourceLocation: sourceLocation)
            #expect(grpc.output == http.output, "gRPC and HTTP differ for \(arguments):\n\(grpc.output)\n\(http.output)", sourceLocation: sourceLocation)
        }
    }

    @Test("every RPC through dronectl; both doors give the same JSON")
    func everyRPC() async throws {
        let system = try System()
        defer { system.stop() }
        let calls = Calls()
        let config = system.data.appendingPathComponent("dronectl.json").path
        calls.dronectl.environment["DRONECTL_CONFIG"] = config
        // One context for the whole system: every service's address, the gateway, the demo key.
        #expect(try calls.dronectl.run(["config", "set", "e2e", "--local-system", String(system.portBase),
                                        "--api-key", "fdk_local_demo_key", "--use"]).status == 0)
        let owner = "acct-demo"

        // Health and reflection, which every process serves.
        let delivery = "127.0.0.1:\(system.portBase + 3)"
        #expect(try calls.json(["health", "check", "--server", delivery])["status"] as? String == "SERVING")
        #expect(try calls.run(["health", "list", "--server", delivery]).output.contains("fabrikam.dronedelivery.delivery.v1.DeliveryService"))
        let watch = try calls.run(["health", "watch", "--server", delivery, "--timeout", "1s"], expect: 68)
        #expect(watch.lines.first == #"{"status":"SERVING"}"#)
        let reflection = try calls.run(["server-reflection", "server-reflection-info", "--server", delivery, "-d", "@-"],
                                       input: "{\"listServices\": \"\"}\n{\"fileContainingSymbol\": \"grpc.health.v1.Health\"}\n")
        #expect(reflection.lines.count == 2)
        #expect(reflection.lines.first?.contains("fabrikam.dronedelivery.delivery.v1.DeliveryService") == true)

        // Accounts: a business registers through the public door (no key needed); the demo
        // business issues, checks and revokes a key.
        let registered = try calls.run(["accounts", "register-account", "--display-name", "E2E Couriers", "--contact-email", "ops@e2e.example",
                                        "--request-id", "e2e-1", "--transport", "http", "--api-key", ""], expect: 0)
        #expect(registered.output.contains("E2E Couriers"))
        try calls.sameOverBothDoors(["accounts", "get-account", "--name", "accounts/\(owner)"])
        try calls.run(["accounts", "add-user", "--account-id", owner, "--user.user-id", "u-e2e", "--user.display-name", "E2E",
                       "--user.email", "e2e@example.com", "--user.role", "member"])
        let issued = try calls.json(["accounts", "issue-api-key", "--account-id", owner, "--display-name", "e2e", "--ttl", "3600s"])
        let secret = try #require(issued["secret"] as? String)
        let keyID = try #require((issued["apiKey"] as? [String: Any])?["keyId"] as? String)
        #expect(try calls.json(["accounts", "validate-api-key", "--secret", secret])["valid"] as? Bool == true)
        try calls.run(["accounts", "revoke-api-key", "--account-id", owner, "--key-id", keyID])

        // Ingestion: a delivery requested through the gateway, as a business would.
        let created = try calls.json(["ingestion", "create-delivery", "--transport", "http",
                                      "--pickup-location.latitude", "47.6101", "--pickup-location.longitude", "-122.3421",
                                      "--dropoff-location.latitude", "47.6205", "--dropoff-location.longitude", "-122.3493",
                                      "--package-info.size", "small", "--package-info.weight", "1.5", "--request-id", "e2e-delivery-1"])
        let deliveryID = try #require(created["deliveryId"] as? String)
        // Ingestion hands a request on as soon as it is stored, so whether this one is still queued
        // is a race: ask for one that never was, and get its NOT_FOUND through dronectl.
        let queued = try calls.run(["ingestion", "get-queued-delivery", "--delivery-id", "dlv-never-queued"], expect: 69)
        #expect(queued.errors.contains("NOT_FOUND"), "\(queued)")
        // Follow it over the gateway's stream until it is delivered.
        let tracked = try calls.run(["delivery", "track-delivery", "--delivery-id", deliveryID, "--transport", "http", "--timeout", "120s"])
        #expect(tracked.lines.last?.contains("DELIVERY_STAGE_COMPLETED") == true, "\(tracked)")
        // The same stream over gRPC, now that it is delivered, is the same lines as over HTTP.
        try calls.sameOverBothDoors(["delivery", "track-delivery", "--delivery-id", deliveryID])
        try calls.sameOverBothDoors(["delivery", "get-delivery", "--delivery-id", deliveryID])
        // Its HTTP rule answers with the `status` field alone (response_body: "status"): over HTTP
        // dronectl fills just that field, which is the same JSON as gRPC's.
        let statusOverGRPC = try calls.json(["delivery", "get-delivery-status", "--delivery-id", deliveryID])
        let statusOverHTTP = try calls.json(["delivery", "get-delivery-status", "--delivery-id", deliveryID, "--transport", "http"])
        #expect(statusOverHTTP.keys.sorted() == ["status"], "\(statusOverHTTP)")
        #expect(NSDictionary(dictionary: statusOverGRPC["status"] as? [String: Any] ?? ["grpc": "none"])
                    .isEqual(to: statusOverHTTP["status"] as? [String: Any] ?? ["http": "none"]))
        try calls.sameOverBothDoors(["delivery", "list-deliveries"], grpcExtra: ["--owner-id", owner])
        try calls.sameOverBothDoors(["delivery-history", "get-delivery-history", "--delivery-id", deliveryID])
        // The owner is part of these paths: over HTTP the gateway checks it is the caller.
        try calls.sameOverBothDoors(["delivery-history", "list-owner-history", "--owner-id", owner])
        try calls.sameOverBothDoors(["drone-scheduler", "get-drone-utilization", "--year", "2026", "--month", "12", "--owner-id", owner])
        // A tracking link for it, through the gateway; its token reads the delivery's status.
        let link = try calls.json(["accounts", "create-tracking-link", "--delivery-id", deliveryID, "--transport", "http"])
        let token = try #require(link["token"] as? String)
        #expect((link["trackingPath"] as? String)?.hasPrefix("/track#") == true, "\(link)")
        try calls.run(["delivery", "get-delivery-status", "--delivery-id", deliveryID, "--transport", "http", "--api-key", token])
        try calls.run(["delivery", "notify-me", "--delivery-id", deliveryID, "--email-address", "me@example.com", "--transport", "http"])
        try calls.run(["delivery", "confirm-delivery", "--delivery-id", deliveryID, "--confirmation.confirmation-type", "none"], expect: 73)
        try calls.run(["workflow", "get-saga-status", "--delivery-id", deliveryID])
        try calls.run(["workflow", "list-sagas", "--state", "succeeded"])
        try calls.run(["drone-scheduler", "get-assignment", "--delivery-id", deliveryID])

        // A second delivery, cancelled at the door; then changes to one that is not there.
        let second = try calls.json(["ingestion", "create-delivery", "-d",
                                     #"{"pickupLocation": {"latitude": 47.61, "longitude": -122.34}, "dropoffLocation": {"latitude": 47.62, "longitude": -122.35}, "packageInfo": {"size": "PACKAGE_SIZE_SMALL", "weight": 1}}"#,
                                     "--owner.account-id", owner, "--owner.user-id", "u-e2e"])
        let secondID = try #require(second["deliveryId"] as? String)
        try calls.run(["ingestion", "reschedule-delivery", "--delivery-id", secondID, "--expedited"])
        try calls.run(["ingestion", "cancel-delivery", "--delivery-id", secondID, "--reason", "changed my mind"])
        try calls.run(["delivery", "reschedule-delivery", "--delivery-id", "dlv-none", "--expedited"], expect: 69)
        try calls.run(["delivery", "cancel-delivery", "--delivery-id", "dlv-none", "--reason", "x"], expect: 69)
        try calls.run(["delivery", "mark-delivery-failed", "--delivery-id", "dlv-e2e-failed", "--reason", "test", "--saga-id", "saga-e2e",
                       "--owner.account-id", owner, "--pickup-location.latitude", "47.61", "--pickup-location.longitude", "-122.34",
                       "--dropoff-location.latitude", "47.62", "--dropoff-location.longitude", "-122.35"])
        // A cancel that could not be made, shown in the status; the request queue's dead letters.
        try calls.run(["delivery", "record-failed-change", "--delivery-id", secondID, "--change.operation", "cancel", "--change.reason", "too late"])
        try calls.run(["ingestion", "list-dead-letters"])
        try calls.run(["ingestion", "redrive-dead-letters", "--all"])

        // Delivery's internal doors: scheduling one directly, and drone positions streamed in.
        // Delivery asks the simulator to fly it: the drone must be one of the simulated fleet.
        try calls.run(["delivery", "schedule-delivery", "--delivery.delivery-id", "dlv-e2e-direct", "--delivery.drone-id", "drone-005",
                       "--delivery.owner.account-id", owner,
                       "--delivery.pickup-location.latitude", "47.61", "--delivery.pickup-location.longitude", "-122.34",
                       "--delivery.dropoff-location.latitude", "47.62", "--delivery.dropoff-location.longitude", "-122.35"])
        let positions = (1...3).map { #"{"positions": [{"droneId": "drone-e2e", "deliveryId": "dlv-e2e-direct", "sequence": \#($0), "location": {"latitude": 47.61, "longitude": -122.34}}]}"# }
        let reported = try calls.json(["delivery", "report-drone-positions", "-d", positions.joined(separator: "\n")])
        #expect(reported.isEmpty == false)

        // Package.
        try calls.run(["package", "put-package", "--package.package-id", "pkg-e2e", "--package.size", "medium", "--package.weight", "2.5",
                       "--package.owner-id", owner])
        try calls.sameOverBothDoors(["package", "get-package", "--package-id", "pkg-e2e"])
        try calls.run(["package", "update-package", "--package.package-id", "pkg-e2e", "--package.tag", "fragile", "--update-mask", "tag"])
        try calls.sameOverBothDoors(["package", "get-package-summary", "--owner-id", owner])
        try calls.run(["package", "delete-package", "--package-id", "pkg-e2e"])

        // Delivery history's internal door.
        try calls.run(["delivery-history", "record-delivery-event", "--event.event-id", "evt-e2e", "--event.delivery-id", "dlv-e2e-direct",
                       "--event.owner.account-id", owner, "--event.stage", "created", "--event.event-time", "2026-12-01T10:00:00Z"])

        // Drone Scheduler: the fleet, a drone of our own, an assignment made and released.
        let fleet = try calls.json(["drone-scheduler", "get-fleet-status", "--include-drones"])
        #expect(fleet.isEmpty == false)
        try calls.run(["drone-scheduler", "register-drone", "--drone.drone-id", "drone-e2e", "--drone.capacity-kg", "5",
                       "--drone.max-package-size", "large", "--drone.home-location.latitude", "47.60", "--drone.home-location.longitude", "-122.33",
                       "--drone.cruise-speed-mps", "15"])
        try calls.run(["drone-scheduler", "list-drones", "--page-size", "50"])
        try calls.run(["drone-scheduler", "assign-drone", "--delivery-id", "dlv-e2e-assign", "--owner.account-id", owner,
                       "--pickup-location.latitude", "47.61", "--pickup-location.longitude", "-122.34",
                       "--dropoff-location.latitude", "47.62", "--dropoff-location.longitude", "-122.35",
                       "--package-info.size", "small", "--package-info.weight", "1"])
        try calls.run(["drone-scheduler", "release-drone", "--delivery-id", "dlv-e2e-assign", "--reason", "test over"])

        // The simulator's flight control.
        try calls.run(["flight-control", "assign-flight", "--plan.flight-id", "flt-e2e", "--plan.drone-id", "drone-006",
                       "--plan.delivery-id", "dlv-e2e-flight", "--plan.pickup-location.latitude", "47.61", "--plan.pickup-location.longitude", "-122.34",
                       "--plan.dropoff-location.latitude", "47.62", "--plan.dropoff-location.longitude", "-122.35"])
        try calls.run(["flight-control", "abort-flight", "--delivery-id", "dlv-e2e-flight", "--reason", "test over"])
        // The Drone Scheduler keeps the fleet's positions (TelemetryService, at the address the
        // context gives `telemetry`): two batches of drone-e2e's reports, the second repeating the
        // first report, each acknowledged with the highest sequence stored; then the fleet shows
        // the drone where it last reported.
        let batches = [
            #"{"positions": [{"droneId": "drone-e2e", "sequence": "1", "time": "2026-12-01T10:00:00Z", "location": {"latitude": 47.605, "longitude": -122.335}}]}"#,
            #"{"positions": [{"droneId": "drone-e2e", "sequence": "2", "time": "2026-12-01T10:00:01Z", "location": {"latitude": 47.606, "longitude": -122.336}}, "#
                + #"{"droneId": "drone-e2e", "sequence": "1", "time": "2026-12-01T10:00:00Z", "location": {"latitude": 47.605, "longitude": -122.335}}]}"#,
        ]
        let acks = try calls.run(["telemetry", "report-positions", "-d", batches.joined(separator: "\n")])
        #expect(acks.lines == [#"{"acks":[{"droneId":"drone-e2e","sequence":"1"}]}"#, #"{"acks":[{"droneId":"drone-e2e","sequence":"2"}]}"#], "\(acks)")
        let listed = try calls.json(["drone-scheduler", "list-drones", "--page-size", "50"])
        let reporter = (listed["drones"] as? [[String: Any]])?.first { $0["droneId"] as? String == "drone-e2e" }
        let reportedAt = try #require(reporter?["position"] as? [String: Any], "\(listed)")
        #expect(reportedAt["latitude"] as? Double == 47.606 && reportedAt["longitude"] as? Double == -122.336, "\(reportedAt)")
        #expect(reporter?["positionTime"] as? String == "2026-12-01T10:00:01Z")

        // Supervisor: a failed saga recorded, listed, read, retried and compensated.
        try calls.run(["supervisor", "record-failed-saga", "--saga.saga-id", "saga-e2e-1", "--saga.delivery-id", "dlv-e2e-saga",
                       "--saga.owner.account-id", owner, "--saga.error.code", "14", "--saga.error.message", "down"])
        try calls.run(["supervisor", "list-failed-sagas"])
        try calls.run(["supervisor", "get-failed-saga", "--saga-id", "saga-e2e-1"])
        // Recorded by hand, it has no stored request that could be queued again.
        try calls.run(["supervisor", "retry-failed-saga", "--saga-id", "saga-e2e-1"], expect: 73)
        try calls.run(["supervisor", "compensate-failed-saga", "--saga-id", "saga-e2e-1"])

        // The check: a method of the generated commands that no call above reached fails here.
        let missing = GeneratedCommands.methods.map { $0.command.joined(separator: " ") }.filter { !calls.called.contains($0) }
        #expect(missing.isEmpty, "methods never called through dronectl: \(missing)")
    }
}
