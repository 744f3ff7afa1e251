import DroneDeliveryAPI
import Foundation
import GRPCProtos
import RPC
import Testing
import TestSupport

extension EndToEndTests {
    @Suite("Every process serves health and reflection", .serialized)
    struct HealthTests {
        @Test("grpc.health.v1 says SERVING for each service, and buf curl finds the services by reflection alone")
        func healthAndReflection() async throws {
            try await withSystem { system in
                let services = [
                    ("accounts", "fabrikam.dronedelivery.accounts.v1.AccountsService"),
                    ("package", "fabrikam.dronedelivery.package.v1.PackageService"),
                    ("dronescheduler", "fabrikam.dronedelivery.dronescheduler.v1.DroneSchedulerService"),
                    ("dronescheduler", "fabrikam.dronedelivery.telemetry.v1.TelemetryService"),
                    ("delivery", "fabrikam.dronedelivery.delivery.v1.DeliveryService"),
                    ("deliveryhistory", "fabrikam.dronedelivery.deliveryhistory.v1.DeliveryHistoryService"),
                    ("ingestion", "fabrikam.dronedelivery.ingestion.v1.IngestionService"),
                    ("workflow", "fabrikam.dronedelivery.workflow.v1.WorkflowService"),
                    ("supervisor", "fabrikam.dronedelivery.supervisor.v1.SupervisorService"),
                    ("simulator", "fabrikam.dronedelivery.telemetry.v1.FlightControlService"),
                ]
                for (process, service) in services {
                    var request = Grpc.Health.V1.HealthCheckRequest()
                    request.service = service
                    let answer = try await Grpc.Health.V1.Health.Client(system.client(process)).check(request)
                    #expect(answer.status == .serving, "\(process): \(service)")
                    // buf (an independent gRPC client) lists the process's services through reflection.
                    let listed = String(decoding: try await run(repositoryRoot.appendingPathComponent(".venv/bin/buf").path, [
                        "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", "http://127.0.0.1:\(system.port(process))",
                    ]), as: UTF8.self)
                    #expect(listed.contains(service), "\(process) lists \(listed)")
                }
            }
        }
    }
}
