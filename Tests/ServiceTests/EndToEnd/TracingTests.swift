#if canImport(Glibc)
import Glibc
#endif
import DroneDeliveryAPI
import Foundation
import RPC
import ServiceKit
import Testing
import TestSupport

/// A real OTLP/gRPC receiver (tools/otlp_receiver.py: grpcio serving the collector's TraceService
/// with PyPI's opentelemetry-proto), and the spans it has written.
final class OTLPReceiver: @unchecked Sendable {
    /// One span as the receiver decoded it.
    struct Span: CustomStringConvertible {
        var service: String
        var traceID: String
        var spanID: String
        var parentSpanID: String
        var name: String
        var kind: String
        var attributes: [String: Any]
        var status: String
        var statusMessage: String = ""
        var traceState: String = ""
        var start: UInt64
        var end: UInt64

        var description: String { "\(service) \(kind) \"\(name)\" span \(spanID) parent \(parentSpanID.isEmpty ? "-" : parentSpanID)" }
    }

    let folder: URL
    let output: URL
    let port: Int
    private let process: Process

    init() async throws {
        folder = try makeTemporaryDirectory("otlp-receiver")
        output = folder.appendingPathComponent("spans.jsonl")
        let log = folder.appendingPathComponent("receiver.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: projectPython)
        process.arguments = [repositoryRoot.appendingPathComponent("tools/otlp_receiver.py").path, output.path, "--max-seconds", "300"]
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        var found: Int?
        let process = process
        try await waitFor("the OTLP receiver to listen", timeout: .seconds(30)) {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }) { found = Int(line.dropFirst(13)) }
            return found != nil || !process.isRunning
        }
        guard let found else { throw Failure("the OTLP receiver did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
        port = found
    }

    /// Every span received so far.
    func spans() -> [Span] {
        guard let text = try? String(contentsOf: output, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return nil }
            return Span(service: object["service"] as? String ?? "", traceID: object["traceId"] as? String ?? "", spanID: object["spanId"] as? String ?? "",
                        parentSpanID: object["parentSpanId"] as? String ?? "", name: object["name"] as? String ?? "",
                        kind: object["kind"] as? String ?? "", attributes: object["attributes"] as? [String: Any] ?? [:],
                        status: object["status"] as? String ?? "", statusMessage: object["statusMessage"] as? String ?? "",
                        traceState: object["traceState"] as? String ?? "", start: (object["start"] as? NSNumber)?.uint64Value ?? 0,
                        end: (object["end"] as? NSNumber)?.uint64Value ?? 0)
        }
    }

    func stop() {
        // SIGKILL: a child of Foundation's Process starts with its signals blocked.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: folder)
    }
}

extension EndToEndTests {
    @Suite("Traces: one delivery is one trace, exported over OTLP to a real receiver", .serialized)
    struct TracingTests {
        /// The saga's steps, the service each calls, and the method.
        static let steps: [(step: String, service: String, method: String)] = [
            ("SAGA_STEP_CHECK_ACCOUNT", "accounts-service", "fabrikam.dronedelivery.accounts.v1.AccountsService/GetAccount"),
            ("SAGA_STEP_PUT_PACKAGE", "package-service", "fabrikam.dronedelivery.package.v1.PackageService/PutPackage"),
            ("SAGA_STEP_ASSIGN_DRONE", "dronescheduler-service", "fabrikam.dronedelivery.dronescheduler.v1.DroneSchedulerService/AssignDrone"),
            ("SAGA_STEP_SCHEDULE_DELIVERY", "delivery-service", "fabrikam.dronedelivery.delivery.v1.DeliveryService/ScheduleDelivery"),
        ]

        @Test("a delivery requested through the gateway: gateway, Ingestion, queue publish and consume, Workflow's saga steps and the services they call, one trace with every parent link")
        func oneDeliveryOneTrace() async throws {
            let receiver = try await OTLPReceiver()
            defer { receiver.stop() }
            try await withSystem(["FABRIKAM_OTLP_ENDPOINT": "127.0.0.1:\(receiver.port)", "FABRIKAM_OTLP_FLUSH_MS": "200"]) { system in
                // First a request whose client did not sample its trace (flags 00): the gateway and
                // the services it calls record nothing of it (checked below, once the sampled
                // trace that follows has arrived whole).
                let unsampledTrace = randomHex(bytes: 16)
                let unsampled = try await system.http("GET", "/v1/deliveries/dlv-unsampled-1",
                                                      headers: ["traceparent": "00-\(unsampledTrace)-\(randomHex(bytes: 8))-00"])
                #expect(unsampled.status >= 400, "\(unsampled.status)")
                // The client's own trace context: the gateway's span must be its child.
                let traceID = randomHex(bytes: 16), clientSpan = randomHex(bytes: 8)
                let created = try await system.http("POST", "/v1/deliveries", body: RunningSystem.deliveryJSON,
                                                    headers: ["traceparent": "00-\(traceID)-\(clientSpan)-01"])
                #expect(created.status == 202, "\(created.body)")
                let deliveryID = try #require(created.json["deliveryId"] as? String)

                // The CONSUMER span ends after every step of the saga; then every span's parent.
                var trace: [OTLPReceiver.Span] = []
                try await waitFor("Workflow's consumer span of the delivery", timeout: .seconds(60)) {
                    trace = receiver.spans().filter { $0.traceID == traceID }
                    return trace.contains { $0.kind == "SPAN_KIND_CONSUMER" && $0.service == "workflow-service" }
                        && trace.contains { $0.kind == "SPAN_KIND_CONSUMER" && $0.service == "deliveryhistory-service" }
                }
                func unparented(_ spans: [OTLPReceiver.Span]) -> [OTLPReceiver.Span] {
                    let ids = Set(spans.map(\.spanID))
                    return spans.filter { $0.parentSpanID != clientSpan && !ids.contains($0.parentSpanID) }
                }
                // Each process exports on its own schedule: the called services' SERVER spans may
                // come after every parent has (a missing leaf leaves no span without its parent).
                try? await waitFor("every parent span and every called service's span to arrive", timeout: .seconds(10)) {
                    trace = receiver.spans().filter { $0.traceID == traceID }
                    return unparented(trace).isEmpty && Self.steps.allSatisfy { step in
                        trace.contains { $0.service == step.service && $0.kind == "SPAN_KIND_SERVER" && $0.name == step.method }
                    }
                }
                let listing = trace.sorted { $0.start < $1.start }.map(\.description).joined(separator: "\n")
                #expect(unparented(trace).isEmpty, "spans whose parent is not in the trace: \(unparented(trace))\n\(listing)")
                #expect(Set(trace.map(\.spanID)).count == trace.count, "span ids are unique")

                func one(_ what: String, _ match: (OTLPReceiver.Span) -> Bool) throws -> OTLPReceiver.Span {
                    let found = trace.filter(match)
                    guard let span = found.first else { throw Failure("no \(what) in the trace:\n\(listing)") }
                    return span
                }
                // The gateway: the HTTP request (SERVER, the client's span its parent), its call to Ingestion (CLIENT).
                let gateway = try one("gateway SERVER span") { $0.service == "gateway" && $0.kind == "SPAN_KIND_SERVER" }
                #expect(gateway.parentSpanID == clientSpan)
                #expect(gateway.name == "POST /v1/deliveries", "\(gateway.name)")
                #expect(gateway.attributes["http.response.status_code"] as? Int == 202)
                let create = "fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery"
                let gatewayCall = try one("gateway CLIENT span to Ingestion") {
                    $0.service == "gateway" && $0.kind == "SPAN_KIND_CLIENT" && $0.name == create && $0.parentSpanID == gateway.spanID
                }
                // Ingestion: its SERVER span under the gateway's call, the PRODUCER span under it.
                let ingestion = try one("Ingestion SERVER span") {
                    $0.service == "ingestion-service" && $0.kind == "SPAN_KIND_SERVER" && $0.name == create && $0.parentSpanID == gatewayCall.spanID
                }
                #expect(ingestion.attributes["rpc.system"] as? String == "grpc")
                #expect(ingestion.attributes["rpc.method"] as? String == "CreateDelivery")
                #expect(ingestion.attributes["rpc.grpc.status_code"] as? Int == 0)
                let producer = try one("PRODUCER span") {
                    $0.service == "ingestion-service" && $0.kind == "SPAN_KIND_PRODUCER" && $0.parentSpanID == ingestion.spanID
                }
                #expect(producer.attributes["messaging.destination.name"] as? String == "delivery-requests")
                #expect(producer.attributes["fabrikam.delivery.id"] as? String == deliveryID)
                // Workflow: the CONSUMER span under the PRODUCER span, a step span per step under it.
                let consumer = try one("Workflow CONSUMER span under the PRODUCER span") {
                    $0.service == "workflow-service" && $0.kind == "SPAN_KIND_CONSUMER" && $0.parentSpanID == producer.spanID
                }
                #expect(consumer.attributes["fabrikam.delivery.id"] as? String == deliveryID)
                for (step, service, method) in Self.steps {
                    let stepSpan = try one("saga step \(step)") {
                        $0.service == "workflow-service" && $0.kind == "SPAN_KIND_INTERNAL" && $0.name == "saga step \(step)" && $0.parentSpanID == consumer.spanID
                    }
                    #expect(stepSpan.status != "STATUS_CODE_ERROR")
                    // The step's call (CLIENT) and the called service's SERVER span under it.
                    let call = try one("Workflow's CLIENT span of \(step)") {
                        $0.service == "workflow-service" && $0.kind == "SPAN_KIND_CLIENT" && $0.name == method && $0.parentSpanID == stepSpan.spanID
                    }
                    let served = try one("\(service)'s SERVER span of \(method)") {
                        $0.service == service && $0.kind == "SPAN_KIND_SERVER" && $0.name == method && $0.parentSpanID == call.spanID
                    }
                    #expect(served.attributes["rpc.grpc.status_code"] as? Int == 0)
                    #expect(served.start >= call.start && served.end <= call.end + 1_000_000_000, "the server's span lies within the call's (clocks of one host)")
                }
                // Delivery's event of the scheduling: a PRODUCER span under its ScheduleDelivery
                // span, and Delivery History's CONSUMER span under that.
                let scheduled = try one("Delivery's SERVER span of ScheduleDelivery") {
                    $0.service == "delivery-service" && $0.kind == "SPAN_KIND_SERVER" && $0.name.hasSuffix("/ScheduleDelivery")
                }
                let event = try one("Delivery's PRODUCER span of the event") {
                    $0.service == "delivery-service" && $0.kind == "SPAN_KIND_PRODUCER" && $0.parentSpanID == scheduled.spanID
                }
                _ = try one("Delivery History's CONSUMER span of the event") {
                    $0.service == "deliveryhistory-service" && $0.kind == "SPAN_KIND_CONSUMER" && $0.parentSpanID == event.spanID
                }
                let unsampledSpans = receiver.spans().filter { $0.traceID == unsampledTrace }
                #expect(unsampledSpans.isEmpty, "spans of a trace the client did not sample: \(unsampledSpans)")
                // Every process reported under its own service.name.
                let services = Set(trace.map(\.service))
                for expected in ["gateway", "ingestion-service", "workflow-service", "accounts-service", "package-service", "dronescheduler-service", "delivery-service",
                                 "deliveryhistory-service"] {
                    #expect(services.contains(expected), "\(expected) in \(services.sorted())")
                }
            }
        }
    }
}

/// When the collector is down, calls go on as before and the spans are dropped and counted.
@Suite("Traces: each span field as OpenTelemetry's own generated code decodes it")
struct SpanEncodingTests {
    @Test("RPC spans (named by their method, with the rpc.* attributes and an error status; from a struct and from the interceptors' path) and a plain root span with attributes of every type reach a real receiver intact")
    func spansDecoded() async throws {
        let receiver = try await OTLPReceiver()
        defer { receiver.stop() }
        let recorder = SpanRecorder(host: "127.0.0.1", port: receiver.port, serviceName: "encoding-test")
        let traceID = randomHex(bytes: 16), callerSpan = randomHex(bytes: 8), serverSpan = randomHex(bytes: 8), rootSpan = randomHex(bytes: 8)
        let method = PackageV1.PackageService.Method.GetPackage.descriptor
        // Longer than 127 bytes: its length's varint takes two bytes (the writer moves the bytes).
        let failure = "UNAVAILABLE: the store is down" + String(repeating: " (and stayed down)", count: 10)
        recorder.record(FinishedSpan(rpc: method, code: .unavailable, traceparent: "00-\(traceID)-\(serverSpan)-01",
                                     parentTraceparent: "00-\(traceID)-\(callerSpan)-01", traceState: "vendor=1", kind: .server,
                                     start: 1_000, end: 2_500, error: failure))
        recorder.record(FinishedSpan(traceparent: "00-\(traceID)-\(rootSpan)-01", parentTraceparent: "", name: "saga step ASSIGN_DRONE",
                                     kind: .internal, start: 3_000, end: 4_000,
                                     attributes: [SpanAttribute("fabrikam.saga.id", "saga-1"), SpanAttribute("attempt", 3), SpanAttribute("retried", true)]))
        // What the tracing interceptors record: the same span without the struct.
        let clientSpan = randomHex(bytes: 8)
        recorder.recordRPC(path: method.path, code: .notFound, traceparent: "00-\(traceID)-\(clientSpan)-01", parentTraceparent: "00-\(traceID)-\(rootSpan)-01",
                           traceState: "", kind: .client, start: 5_000, end: 6_000, error: "NOT_FOUND: no such package")
        await recorder.flush()
        var spans: [OTLPReceiver.Span] = []
        try await waitFor("the receiver to write all three spans", timeout: .seconds(30)) {
            spans = receiver.spans()
            return spans.count >= 3
        }
        let client = try #require(spans.first { $0.spanID == clientSpan }, "\(spans)")
        #expect(client.traceID == traceID && client.parentSpanID == rootSpan && client.kind == "SPAN_KIND_CLIENT")
        #expect(client.name == "fabrikam.dronedelivery.package.v1.PackageService/GetPackage" && client.start == 5_000 && client.end == 6_000)
        #expect(client.attributes["rpc.method"] as? String == "GetPackage" && client.attributes["rpc.grpc.status_code"] as? Int == 5)
        #expect(client.status == "STATUS_CODE_ERROR" && client.statusMessage == "NOT_FOUND: no such package")
        let server = try #require(spans.first { $0.spanID == serverSpan }, "\(spans)")
        #expect(server.service == "encoding-test" && server.traceID == traceID && server.parentSpanID == callerSpan)
        #expect(server.name == "fabrikam.dronedelivery.package.v1.PackageService/GetPackage" && server.kind == "SPAN_KIND_SERVER")
        #expect(server.traceState == "vendor=1" && server.start == 1_000 && server.end == 2_500)
        #expect(server.attributes["rpc.system"] as? String == "grpc")
        #expect(server.attributes["rpc.service"] as? String == "fabrikam.dronedelivery.package.v1.PackageService")
        #expect(server.attributes["rpc.method"] as? String == "GetPackage")
        #expect(server.attributes["rpc.grpc.status_code"] as? Int == 14)
        #expect(server.status == "STATUS_CODE_ERROR" && server.statusMessage == failure)
        let root = try #require(spans.first { $0.spanID == rootSpan }, "\(spans)")
        #expect(root.traceID == traceID && root.parentSpanID.isEmpty && root.name == "saga step ASSIGN_DRONE" && root.kind == "SPAN_KIND_INTERNAL")
        #expect(root.status == "STATUS_CODE_UNSET" && root.traceState.isEmpty)
        #expect(root.attributes["fabrikam.saga.id"] as? String == "saga-1")
        #expect(root.attributes["attempt"] as? Int == 3)
        #expect(root.attributes["retried"] as? Bool == true)
        #expect(root.attributes["rpc.system"] == nil, "a plain span has no rpc attributes")
        await recorder.shutdown()
    }
}

@Suite("Traces: a collector that is down never fails a call")
struct TracingCollectorDownTests {
    @Test("a service exporting to a closed port answers every call, and counts the spans it dropped on its metrics endpoint")
    func collectorDown() async throws {
        let metricsPort = try freePort()
        let closedPort = try freePort()  // nothing listens there
        let service = try ServiceProcess("package-service", port: try freePort(),
                                         environment: ["FABRIKAM_METRICS_PORT": "\(metricsPort)", "FABRIKAM_OTLP_ENDPOINT": "127.0.0.1:\(closedPort)",
                                                       "FABRIKAM_OTLP_FLUSH_MS": "100"])
        try await service.start()
        do {
            try await callAndCount(service, metricsPort: metricsPort)
        } catch {
            await service.stop()
            throw error
        }
        await service.stop()
    }

    func callAndCount(_ service: ServiceProcess, metricsPort: Int) async throws {
        var request = PackageV1.GetPackageRequest()
        request.packageId = "no-such-package"
        // The deadline is a bound against a hang: under load 5 s could pass before NOT_FOUND came.
        for _ in 0..<3 {
            do {
                _ = try await PackageV1.PackageService.Client(service.client).getPackage(request, options: CallOptions(timeout: .seconds(60)))
                Issue.record("a package that does not exist was found")
            } catch let error as RPCError {
                #expect(error.code == .notFound, "the call's own answer, not the exporter's failure: \(error)")
            }
        }
        var dropped = 0.0
        try await waitFor("the dropped spans to be counted", timeout: .seconds(30)) {
            let text = String(decoding: try await run("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(metricsPort)/metrics"]), as: UTF8.self)
            dropped = MetricsTests.value(text, "fabrikam_otlp_spans_dropped_total", ["reason": "export_failed"]) ?? 0
            return dropped >= 3
        }
        #expect(dropped >= 3)
    }
}
