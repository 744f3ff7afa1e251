import DroneDeliveryAPI
import Foundation
import RPC
import ServiceKit
import Testing
import TestSupport

/// The metrics endpoint of a real service, read by tools nobody here wrote: curl fetches it,
/// `promtool check metrics` validates the text, and a Prometheus server scrapes it.
@Suite("Metrics: Prometheus text on an admin port, checked by promtool and scraped by Prometheus")
struct MetricsTests {
    /// One sample of the text format: `name{label="value",...} number`.
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static func samples(_ text: String) -> [Sample] {
        text.split(separator: "\n").compactMap { line -> Sample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return Sample(name: String(series), labels: [:], value: value) }
            var labels: [String: String] = [:]
            for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { labels[String(parts[0])] = String(parts[1].dropFirst().dropLast()) }
            }
            return Sample(name: String(series[..<brace]), labels: labels, value: value)
        }
    }

    static func value(_ text: String, _ name: String, _ labels: [String: String]) -> Double? {
        samples(text).first { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }?.value
    }

    /// A program's status and outputs (as text), run on a thread of its own.
    func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String, errorOutput: String) {
        let outcome = try await onOwnThread { try runCollecting(executable, arguments, timeout: .seconds(30)) }
        return (outcome.status, String(decoding: outcome.output, as: UTF8.self), String(decoding: outcome.errorOutput, as: UTF8.self))
    }

    static let getPackage = ["grpc_type": "unary", "grpc_service": "fabrikam.dronedelivery.package.v1.PackageService", "grpc_method": "GetPackage"]

    /// A package-service with its metrics on a free port, after two NOT_FOUND calls.
    func withService(_ body: (ServiceProcess, Int) async throws -> Void) async throws {
        let metricsPort = try freePort()
        let service = try ServiceProcess("package-service", port: try freePort(), environment: ["FABRIKAM_METRICS_PORT": "\(metricsPort)"])
        try await service.start()
        do {
            var request = PackageV1.GetPackageRequest()
            request.packageId = "no-such-package"
            for _ in 0..<2 {
                await #expect(throws: RPCError.self) { _ = try await PackageV1.PackageService.Client(service.client).getPackage(request) }
            }
            try await body(service, metricsPort)
        } catch {
            await service.stop()
            throw error
        }
        await service.stop()
    }

    @Test("curl reads per-method counts by status code, a latency histogram, in-flight calls and the process's figures; promtool finds the text valid")
    func scrapeAndValidate() async throws {
        try await withService { service, metricsPort in
            let scrape = try await run("/usr/bin/curl", ["-sS", "--fail", "http://127.0.0.1:\(metricsPort)/metrics"])
            #expect(scrape.status == 0, "\(scrape.errorOutput)")
            let text = scrape.output
            #expect(Self.value(text, "grpc_server_started_total", Self.getPackage) == 2, "\(text)")
            #expect(Self.value(text, "grpc_server_handled_total", Self.getPackage.merging(["grpc_code": "NotFound"]) { $1 }) == 2, "\(text)")
            #expect(Self.value(text, "grpc_server_handled_total", Self.getPackage.merging(["grpc_code": "OK"]) { $1 }) == 0,
                    "no OK call was made (the OK series exists from a method's first call: Prometheus's advice against series that appear late)")
            #expect(Self.value(text, "grpc_server_handling_seconds_count", Self.getPackage) == 2, "\(text)")
            #expect(Self.value(text, "grpc_server_handling_seconds_bucket", Self.getPackage.merging(["le": "+Inf"]) { $1 }) == 2, "\(text)")
            #expect(Self.value(text, "grpc_server_in_flight", Self.getPackage) == 0, "\(text)")
            #expect((Self.value(text, "process_resident_memory_bytes", [:]) ?? 0) > 1_000_000, "\(text)")
            #expect((Self.value(text, "process_open_fds", [:]) ?? 0) > 3, "\(text)")
            let file = try makeTemporaryDirectory("metrics").appendingPathComponent("scrape.txt")
            try text.write(to: file, atomically: true, encoding: .utf8)
            let check = try await run("/bin/sh", ["-c", "promtool check metrics < '\(file.path)'"])
            // promtool's lint warns about style (e.g. a counter without HELP) on stdout/stderr with
            // status 3; an invalid exposition is status 1. Both are failures here.
            #expect(check.status == 0, "promtool: \(check.output) \(check.errorOutput)")
            let missing = try await run("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(metricsPort)/nothing"])
            #expect(missing.output == "404")
        }
    }

    @Test("a Prometheus server scrapes a running service: its target is up and the query answers the two NOT_FOUND calls")
    func prometheusScrapes() async throws {
        try await withService { service, metricsPort in
            let folder = try makeTemporaryDirectory("prometheus")
            defer { try? FileManager.default.removeItem(at: folder) }
            let config = folder.appendingPathComponent("prometheus.yml")
            try """
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: package
                    static_configs:
                      - targets: ["127.0.0.1:\(metricsPort)"]
                """.write(to: config, atomically: true, encoding: .utf8)
            let webPort = try freePort()
            let prometheus = Process()
            prometheus.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
            prometheus.arguments = ["--config.file=\(config.path)", "--storage.tsdb.path=\(folder.appendingPathComponent("data").path)",
                                    "--web.listen-address=127.0.0.1:\(webPort)"]
            let log = folder.appendingPathComponent("prometheus.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            prometheus.standardOutput = try FileHandle(forWritingTo: log)
            prometheus.standardError = try FileHandle(forWritingTo: log)
            try prometheus.run()
            defer { prometheus.terminate(); prometheus.waitUntilExit() }
            let query = "grpc_server_handled_total{grpc_method=\"GetPackage\",grpc_code=\"NotFound\"}"
            var answer = ""
            try await waitFor("Prometheus to have scraped the counter", timeout: .seconds(60)) {
                let result = try await run("/usr/bin/curl", ["-sS", "--get", "--data-urlencode", "query=\(query)", "http://127.0.0.1:\(webPort)/api/v1/query"])
                answer = result.output
                return answer.contains("\"value\":[") && answer.contains("\"2\"]")
            }
            #expect(answer.contains("\"job\":\"package\""), "\(answer)")
            let up = try await run("/usr/bin/curl", ["-sS", "--get", "--data-urlencode", "query=up{job=\"package\"}", "http://127.0.0.1:\(webPort)/api/v1/query"])
            #expect(up.output.contains("\"1\"]"), "the target is up: \(up.output)")
        }
    }

    @Test("the drone scheduler reports its drones by status: every status has a series, and they add up to the fleet")
    func dronesByStatus() async throws {
        let metricsPort = try freePort()
        let service = try ServiceProcess("dronescheduler-service", port: try freePort(), environment: ["FABRIKAM_METRICS_PORT": "\(metricsPort)"])
        try await service.start()
        let scheduler = DroneSchedulerV1.DroneSchedulerService.Client(service.client)
        for (index, status) in [DroneSchedulerV1.DroneStatus.available, .available, .maintenance].enumerated() {
            var drone = DroneSchedulerV1.Drone()
            drone.droneId = "metrics-drone-\(index)"
            drone.capacityKg = 5
            drone.maxPackageSize = .medium
            drone.cruiseSpeedMps = 15
            drone.status = status
            drone.homeLocation = CommonV1.Location(latitude: 47.6, longitude: -122.3)
            var request = DroneSchedulerV1.RegisterDroneRequest()
            request.drone = drone
            _ = try await scheduler.registerDrone(request)
        }
        let fleet = try await scheduler.getFleetStatus(DroneSchedulerV1.GetFleetStatusRequest())
        let scrape = try await run("/usr/bin/curl", ["-sS", "--fail", "http://127.0.0.1:\(metricsPort)/metrics"])
        await service.stop()
        let drones = Self.samples(scrape.output).filter { $0.name == "fabrikam_drones" }
        let statuses = Set(drones.compactMap { $0.labels["status"] })
        #expect(statuses == Set(DroneSchedulerV1.DroneStatus.allCases.dropFirst().compactMap(\.protoName)), "\(scrape.output)")
        #expect(Int(drones.reduce(0) { $0 + $1.value }) == Int(fleet.totalDrones) && fleet.totalDrones == 3, "\(scrape.output)")
        #expect(Self.value(scrape.output, "fabrikam_drones", ["status": "DRONE_STATUS_MAINTENANCE"]) == 1, "\(scrape.output)")
        for count in fleet.statusCounts {
            #expect(Self.value(scrape.output, "fabrikam_drones", ["status": count.status.protoName ?? ""]) == Double(count.count), "\(count) in \(scrape.output)")
        }
    }

    @Test("a metrics port that is not a number stops the service with exit status 2, naming the variable")
    func badPort() async throws {
        let service = try ServiceProcess("package-service", port: try freePort(), environment: ["FABRIKAM_METRICS_PORT": "nine"])
        try service.process.run()
        try await onOwnThread { service.process.waitUntilExit() }
        let output = service.output
        await service.stop()
        #expect(service.process.terminationStatus == 2)
        #expect(output.contains("FABRIKAM_METRICS_PORT must be a port number or off, got \"nine\""), "\(output)")
    }
}

extension EndToEndTests {
    /// The gateway's HTTP metrics on its admin port, after requests over HTTP/1.1 and HTTP/2.
    @Suite("Metrics: the gateway's HTTP requests by route template, method and status, their latency, connections by protocol")
    struct GatewayMetricsTests {
        static let deliveryRoute = "/v1/deliveries/{delivery_id}"

        @Test("a scrape shows requests by route template (never the raw path), method and code, a latency histogram, in-flight requests and HTTP/1.1 and HTTP/2 connections; promtool finds it valid")
        func gatewayHTTPMetrics() async throws {
            try await withSystem { system in
                // Two requests for deliveries that do not exist, one over each protocol: one series.
                let overHTTP1 = try await system.http("GET", "/v1/deliveries/dlv-metrics-nope-1")
                let overHTTP2 = try await system.http("GET", "/v1/deliveries/dlv-metrics-nope-2", http2: true)
                #expect(overHTTP1.status == overHTTP2.status && overHTTP1.status >= 400, "\(overHTTP1.status) \(overHTTP2.status)")
                let created = try await system.http("POST", "/v1/deliveries", body: RunningSystem.deliveryJSON)
                #expect(created.status == 202, "\(created.body)")
                let unknown = try await system.http("GET", "/v1/metrics-no-such-route/zz9")
                #expect(unknown.status == 404)
                // Over HTTP/2: SwiftNIO's HTTP/1.1 parser refuses methods it does not know before the gateway sees them.
                let oddMethod = try await system.http("BREW", "/v1/deliveries/dlv-metrics-nope-3", http2: true)
                let health = try await system.http("GET", "/healthz", key: nil)
                #expect(health.status == 200)
                // An HTTP/2 client whose stream window (1,023 bytes) is far below the OpenAPI
                // document's size: the answer waits for its WINDOW_UPDATEs.
                let slowReader = try await onOwnThread {
                    try runCollecting("/usr/bin/nghttp", ["-n", "-s", "-w", "10", system.gatewayURL + "/openapi.json"], timeout: .seconds(30))
                }
                #expect(slowReader.status == 0, "nghttp: \(String(decoding: slowReader.errorOutput, as: UTF8.self))")

                let scrape = String(decoding: try await run("/usr/bin/curl", ["-sS", "--fail", "http://127.0.0.1:\(system.port("gateway") + MetricsEndpoint.defaultPortOffset)/metrics"]),
                                    as: UTF8.self)
                func value(_ name: String, _ labels: [String: String]) -> Double? { MetricsTests.value(scrape, name, labels) }
                let route = ["method": "GET", "route": Self.deliveryRoute]
                #expect(value("http_server_requests_total", route.merging(["code": "\(overHTTP1.status)"]) { $1 }) == 2, "\(scrape)")
                #expect(value("http_server_request_duration_seconds_count", route) == 2, "\(scrape)")
                #expect(value("http_server_request_duration_seconds_bucket", route.merging(["le": "+Inf"]) { $1 }) == 2, "\(scrape)")
                #expect(value("http_server_requests_total", ["method": "POST", "route": "/v1/deliveries", "code": "202"]) == 1, "\(scrape)")
                #expect((value("http_server_requests_total", ["method": "GET", "route": "other", "code": "404"]) ?? 0) >= 1, "\(scrape)")
                #expect(value("http_server_requests_total", ["method": "_OTHER", "route": "other", "code": "\(oddMethod.status)"]) == 1, "\(scrape)")
                #expect((value("http_server_requests_total", ["method": "GET", "route": "/healthz", "code": "200"]) ?? 0) >= 1, "\(scrape)")
                // Bounded cardinality: no label carries an id from a path, nor the odd method.
                let leaked = MetricsTests.samples(scrape).filter { sample in
                    sample.labels.values.contains { $0.contains("dlv-metrics") || $0.contains("zz9") || $0 == "BREW" }
                }
                #expect(leaked.isEmpty, "series labelled with raw paths: \(leaked.map(\.name))")
                #expect(value("http_server_requests_in_flight", [:]) == 0, "\(scrape)")
                #expect((value("http_server_connections_total", ["protocol": "h2"]) ?? 0) >= 2, "\(scrape)")
                #expect((value("http_server_connections_total", ["protocol": "http/1.1"]) ?? 0) >= 4, "\(scrape)")
                #expect(value("http_server_connections", ["protocol": "h2"]) != nil, "\(scrape)")
                #expect((value("http_server_flow_control_stalls_total", ["window": "stream"]) ?? 0) >= 1, "\(scrape)")
                // The RPC runtime's flow-control stall counters are in every process's exposition.
                #expect(value("grpc_client_flow_control_stalls_total", ["window": "stream"]) != nil, "\(scrape)")

                let file = try makeTemporaryDirectory("gateway-metrics").appendingPathComponent("scrape.txt")
                try scrape.write(to: file, atomically: true, encoding: .utf8)
                let check = try await onOwnThread { try runCollecting("/bin/sh", ["-c", "promtool check metrics < '\(file.path)'"], timeout: .seconds(30)) }
                #expect(check.status == 0, "promtool: \(String(decoding: check.output, as: UTF8.self)) \(String(decoding: check.errorOutput, as: UTF8.self))")
            }
        }
    }
}
