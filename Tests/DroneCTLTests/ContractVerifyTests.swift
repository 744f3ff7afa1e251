import DroneCTL
import DroneCTLCommands
import DroneDeliveryAPI
import Foundation
import GRPCProtos
import ProtobufKit
import RPC
import RPCServices
import Testing
import TestSupport

/// `dronectl contract verify` against a provider of its own: the telemetry services
/// (FlightControlService: two unary methods; TelemetryService: a bidirectional stream) on the
/// project's RPC runtime, with reflection, on 127.0.0.1 port 0. It behaves as the contract says,
/// or breaks it in one chosen way (issue 14 item 6, the provider-side faults); each fault must
/// turn the verification red, the well-behaved provider green. The faults live only here: no
/// production service has a switch for them.
@Suite("dronectl contract verify", .serialized)
struct ContractVerifyTests {
    typealias Telemetry = Fabrikam.Dronedelivery.Telemetry.V1

    enum Fault: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// AbortFlight answers ALREADY_EXISTS, which it does not declare.
        case undeclaredStatus
        /// ReportPositions acknowledges the first batch and ends the stream (OK) without the rest.
        case streamEndsEarly
        /// AssignFlight answers a plan without its required drone id.
        case responseBreaksRule
        var testDescription: String { rawValue }
    }

    /// The provider: correct unless `fault` is set.
    static func provider(_ fault: Fault?) -> Router {
        var router = Router()
        router.unary(Telemetry.FlightControlService.Method.AssignFlight.self) { request, _ in
            var response = Telemetry.AssignFlightResponse()
            response.plan = request.plan
            response.created = true
            if fault == .responseBreaksRule { response.plan?.droneId = "" }
            return response
        }
        router.unary(Telemetry.FlightControlService.Method.AbortFlight.self) { request, _ in
            if fault == .undeclaredStatus { throw RPCError(.alreadyExists, "flight \(request.deliveryId) was already aborted") }
            var response = Telemetry.AbortFlightResponse()
            response.aborted = true
            return response
        }
        router.bidirectional(Telemetry.TelemetryService.Method.ReportPositions.self) { requests, responses, _ in
            for try await batch in requests {
                var response = Telemetry.ReportPositionsResponse()
                response.acks = batch.positions.map { position in
                    var ack = Telemetry.ReportPositionsResponse.Ack()
                    ack.droneId = position.droneId
                    ack.sequence = position.sequence
                    return ack
                }
                try await responses.write(response)
                if fault == .streamEndsEarly { return }
            }
        }
        ReflectionService(files: grpcProtoFiles + droneDeliveryProtoFiles, services: router.serviceNames + ["grpc.reflection.v1.ServerReflection"])
            .register(in: &router)
        return router
    }

    /// Runs `body` with the provider listening on 127.0.0.1, port 0.
    static func withProvider<T>(_ fault: Fault?, _ body: (Int) async throws -> T) async throws -> T {
        let server = RPCServer(router: provider(fault), options: .defaults { $0.host = "127.0.0.1"; $0.port = 0 })
        let port = try await server.start()
        do {
            let result = try await body(port)
            await server.shutdown()
            return result
        } catch {
            await server.shutdown()
            throw error
        }
    }

    static let statuses = repositoryRoot.appendingPathComponent("proto/fabrikam/dronedelivery/statuses.json").path
    static let examples = repositoryRoot.appendingPathComponent("proto/fabrikam/dronedelivery/examples").path

    static func verify(port: Int) async throws -> [ContractVerifier.Check] {
        var configuration = ContractVerifier.Configuration(host: "127.0.0.1", port: port, files: GeneratedCommands.files, statuses: statuses)
        configuration.examples = [examples]
        configuration.timeout = .seconds(20)
        return try await ContractVerifier(configuration).run()
    }

    @Test("the well-behaved provider passes every check: the bidirectional example, built requests, a refusal per field rule")
    func wellBehavedProviderPasses() async throws {
        let checks = try await Self.withProvider(nil) { try await Self.verify(port: $0) }
        let failures = checks.filter { $0.failure != nil }
        #expect(failures.isEmpty, "\(failures.map { "\($0.method) \($0.name): \($0.failure!)" })")
        #expect(Set(checks.map(\.service)) == ["fabrikam.dronedelivery.telemetry.v1.FlightControlService", "fabrikam.dronedelivery.telemetry.v1.TelemetryService"])
        // The bidirectional example ran, and so did a request built from the rules for each unary method.
        #expect(checks.contains { $0.method == "ReportPositions" && $0.name.hasPrefix("example ") })
        #expect(checks.filter { $0.name == "a request built from the field rules" }.map(\.method).sorted() == ["AbortFlight", "AssignFlight"])
        // A refused request per rule, nested ones included (plan.pickup_location.latitude's range).
        let refusals = checks.filter { $0.name.hasPrefix("refuses ") }.map(\.name)
        #expect(refusals.contains("refuses delivery_id: required"))
        #expect(refusals.contains("refuses plan.drone_id: required"))
        #expect(refusals.contains("refuses plan.pickup_location.latitude: double.gte"))
    }

    @Test("each provider-side fault turns the verification red, naming what broke", arguments: Fault.allCases)
    func faultIsCaught(fault: Fault) async throws {
        let checks = try await Self.withProvider(fault) { try await Self.verify(port: $0) }
        let failures = checks.filter { $0.failure != nil }
        let expected: (method: String, text: String) = switch fault {
        case .undeclaredStatus: ("AbortFlight", "answered ALREADY_EXISTS")
        case .streamEndsEarly: ("ReportPositions", "the stream ended (OK) after 1 responses, the example expects at least 2")
        case .responseBreaksRule: ("AssignFlight", "breaks the field rules of fabrikam.dronedelivery.telemetry.v1.AssignFlightResponse: plan.drone_id")
        }
        #expect(failures.contains { $0.method == expected.method && $0.failure!.contains(expected.text) },
                "\(failures.map { "\($0.method) \($0.name): \($0.failure!)" })")
        // Only the faulty method fails.
        #expect(Set(failures.map(\.method)) == [expected.method], "\(failures.map { "\($0.method) \($0.name): \($0.failure!)" })")
    }

    /// The same provider on grpcio with protovalidate (tools/contract/grpcio_telemetry_provider.py):
    /// a server that shares nothing with ours but the .proto files.
    @Test("a provider that is not ours (grpcio, protovalidate): green as it is, red with each fault",
          arguments: [nil] + Fault.allCases.map(Optional.some))
    func grpcioProvider(fault: Fault?) async throws {
        let script = repositoryRoot.appendingPathComponent("tools/contract/grpcio_telemetry_provider.py").path
        let name: [Fault: String] = [.undeclaredStatus: "undeclared-status", .streamEndsEarly: "stream-ends-early", .responseBreaksRule: "response-breaks-rule"]
        let server = try TestServer(executable: projectPython, arguments: [script, "--port", "0"] + (fault.map { ["--fault", name[$0]!] } ?? []))
        defer { server.stop() }
        let checks = try await Self.verify(port: server.port)
        let failures = checks.filter { $0.failure != nil }.map { "\($0.method) \($0.name): \($0.failure!)" }
        // Every rule was refused by protovalidate with the field paths ours report.
        #expect(checks.contains { $0.name == "refuses plan.pickup_location.latitude: double.gte" && $0.failure == nil })
        switch fault {
        case nil: #expect(failures.isEmpty, "\(failures)")
        case .undeclaredStatus?: #expect(failures.count == 1 && failures[0].contains("AbortFlight") && failures[0].contains("answered ALREADY_EXISTS"), "\(failures)")
        case .streamEndsEarly?: #expect(failures.count == 1 && failures[0].contains("the stream ended (OK) after 1 responses"), "\(failures)")
        case .responseBreaksRule?: #expect(failures.count == 1 && failures[0].contains("AssignFlightResponse: plan.drone_id"), "\(failures)")
        }
    }

    @Test("the command: a summary, a JUnit report with the failure, exit 1 on a fault and 0 without")
    func commandOutputAndExitStatus() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("contract-verify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for fault in [nil, Fault.undeclaredStatus] {
            let junit = directory.appendingPathComponent("\(fault?.rawValue ?? "good").xml").path
            let result = try await Self.withProvider(fault) { port in
                try Dronectl().run(["contract", "verify", "--server", "127.0.0.1:\(port)", "--statuses", Self.statuses,
                                    "--examples", Self.examples, "--junit", junit, "--timeout", "20s"])
            }
            let report = try String(contentsOfFile: junit, encoding: .utf8)
            #expect(report.contains("<testsuite name=\"fabrikam.dronedelivery.telemetry.v1.FlightControlService\""), "\(report)")
            if fault == nil {
                #expect(result.status == 0, "\(result)")
                #expect(result.output.contains("all ") && result.output.contains(" checks passed"), "\(result)")
                #expect(!report.contains("<failure"), "\(report)")
            } else {
                #expect(result.status == 1, "\(result)")
                #expect(result.output.contains("✘ AbortFlight"), "\(result)")
                #expect(report.contains("<failure message=\"answered ALREADY_EXISTS"), "\(report)")
            }
        }
    }
}
