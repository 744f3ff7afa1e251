import DroneDeliveryAPI
import Foundation
import Logging
import RPC
import ServiceKit
import Testing
import TestSupport

/// JSON log lines, read back by Foundation's JSON parser (not ours).
@Suite("Logs: JSON lines with the request's trace and span ids, the same fields in every process")
struct LogOutputTests {
    static let fixedFields = ["time", "level", "process", "logger", "message"]

    static func parse(_ line: String) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
        guard let object = value as? [String: Any] else { throw Failure("not a JSON object: \(line)") }
        return object
    }

    @Test("a real service with FABRIKAM_LOG_FORMAT=json: every log line is a JSON object; a failed call's line carries the caller's trace and span ids")
    func serviceWritesJSONLines() async throws {
        let service = try ServiceProcess("package-service", port: try freePort(), environment: ["FABRIKAM_LOG_FORMAT": "json"])
        try await service.start()
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736", spanID = "00f067aa0ba902b7"
        var request = PackageV1.GetPackageRequest()
        request.packageId = "no-such-package"
        let options = CallOptions(timeout: .seconds(10), metadata: Metadata([("traceparent", "00-\(traceID)-\(spanID)-01")]))
        await #expect(throws: RPCError.self) { _ = try await PackageV1.PackageService.Client(service.client).getPackage(request, options: options) }
        var failed: [String: Any]?
        try await waitFor("the failed call's log line", timeout: .seconds(15)) {
            failed = try service.output.split(separator: "\n").lazy.filter { $0.hasPrefix("{") }
                .map { try Self.parse(String($0)) }.first { $0["message"] as? String == "call failed" }
            return failed != nil
        }
        let output = service.output
        await service.stop()
        // Standard output has the one "listening on" line for the launcher; everything else is JSON.
        let lines = output.split(separator: "\n").filter { !$0.contains(" listening on ") }
        #expect(lines.count >= 2, "\(output)")
        for line in lines {
            let object = try Self.parse(String(line))
            for field in Self.fixedFields { #expect(object[field] is String, "\(field) in \(line)") }
            #expect(object["process"] as? String == "package-service", "\(line)")
        }
        #expect(failed?["trace_id"] as? String == traceID, "\(String(describing: failed))")
        #expect(failed?["span_id"] as? String == spanID, "\(String(describing: failed))")
        #expect(failed?["rpc.status"] as? String == "NOT_FOUND", "\(String(describing: failed))")
        #expect(failed?["rpc.method"] as? String == "/fabrikam.dronedelivery.package.v1.PackageService/GetPackage", "\(String(describing: failed))")
    }

    @Test("an unknown log format stops the process with exit status 2, naming the variable")
    func unknownFormat() async throws {
        let service = try ServiceProcess("package-service", port: try freePort(), environment: ["FABRIKAM_LOG_FORMAT": "yaml"])
        try service.process.run()
        try await onOwnThread { service.process.waitUntilExit() }
        let output = service.output
        await service.stop()
        #expect(service.process.terminationStatus == 2)
        #expect(output.contains("FABRIKAM_LOG_FORMAT=yaml is not a log format (text or json)"), "\(output)")
    }

    @Test("the handler: control characters escaped, nested metadata as JSON, a metadata key never replaces a fixed field")
    func handlerEscapesAndNests() throws {
        let lines = JSONLogHandler.LogLines()
        var logger = Logger(label: "fabrikam.test") { label in
            JSONLogHandler(label: label, process: "tester", metadataProvider: LogOutput.traceMetadata, output: .memory(lines))
        }
        logger[metadataKey: "handler"] = "kept"
        var trace = CommonV1.TraceContext()
        trace.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        RequestTrace.$current.withValue(trace) {
            logger.warning("a \"quoted\"\nline\u{1}", metadata: ["message": "not the message", "list": .array(["a", .dictionary(["k": "v"])])])
        }
        logger.info("outside a request")
        #expect(lines.all.count == 2)
        let first = try Self.parse(lines.all[0])
        #expect(first["message"] as? String == "a \"quoted\"\nline\u{1}")
        #expect(first["meta.message"] as? String == "not the message")
        #expect(first["level"] as? String == "warning" && first["logger"] as? String == "fabrikam.test" && first["process"] as? String == "tester")
        #expect(first["handler"] as? String == "kept")
        #expect(first["trace_id"] as? String == "0af7651916cd43dd8448eb211c80319c" && first["span_id"] as? String == "b7ad6b7169203331")
        let list = first["list"] as? [Any]
        #expect(list?.first as? String == "a" && (list?.last as? [String: String]) == ["k": "v"], "\(String(describing: list))")
        #expect((first["time"] as? String)?.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(first)")
        let second = try Self.parse(lines.all[1])
        #expect(second["trace_id"] == nil, "no request, no trace id")
    }
}
