import Delivery
import DroneDeliveryAPI
import Foundation
import ProtobufKit
import RPC
import ServiceKit
import Supervisor
import Testing
import TestSupport

/// The Supervisor's MARK_DELIVERY_FAILED compensation against a real Delivery (its logic behind a
/// real socket, its SQLite store): what it records for a delivery Delivery never heard of.
@Suite("Compensation: the failed delivery Delivery records")
struct CompensationRecordTests {
    static let pickup = CommonV1.Location(latitude: 47.6101, longitude: -122.3421)
    static let dropoff = CommonV1.Location(latitude: 47.6205, longitude: -122.3493)

    /// A failed create saga of `delivery` that never reached Delivery, with `envelope` as the
    /// request it ran.
    static func failedSaga(_ id: String, delivery: String, envelope: [UInt8]) -> SupervisorV1.FailedSaga {
        var saga = ServiceLogicTests.failedSaga(id, delivery: delivery)
        saga.operation = .create
        var owner = CommonV1.Owner()
        owner.accountId = "acct"
        saga.owner = owner
        saga.requestEnvelope = envelope
        return saga
    }

    static func createEnvelope(_ delivery: String) throws -> [UInt8] {
        var request = IngestionV1.DeliveryRequest()
        request.deliveryId = delivery
        var owner = CommonV1.Owner()
        owner.accountId = "acct"
        request.owner = owner
        request.pickupLocation = pickup
        request.dropoffLocation = dropoff
        var envelope = IngestionV1.RequestEnvelope()
        envelope.messageId = "msg-\(delivery)"
        envelope.deliveryId = delivery
        envelope.operation = .create
        envelope.payload = .create(request)
        return try envelope.serializedBytes()
    }

    @Test("marking a delivery Delivery never heard of failed records it with the create request's locations, keeping Delivery's field rules; without a create request nothing is recorded")
    func markFailedRecordsAValidDelivery() async throws {
        let folder = try makeTemporaryDirectory("compensation-record")
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)  // flight control: the abort is kept for later
        let delivery = DeliveryServiceLogic(store: try SQLiteDeliveryStore(path: folder.appendingPathComponent("delivery.sqlite").path),
                                            flightControl: unreachable)
        var router = Router()
        delivery.register(in: &router)
        let server = RPCServer(router: router)
        let port = try await server.start()
        let deliveryClient = RPCClient(host: "127.0.0.1", port: port)
        let supervisor = SupervisorServiceLogic(store: try SQLiteFailedSagaStore(path: folder.appendingPathComponent("sagas.sqlite").path),
                                                targets: CompensationTargets(scheduler: unreachable, packages: unreachable, delivery: deliveryClient,
                                                                             flightControl: unreachable), requestQueue: nil)
        func compensate(_ saga: SupervisorV1.FailedSaga) async throws -> SupervisorV1.FailedSaga {
            var record = SupervisorV1.RecordFailedSagaRequest()
            record.saga = saga
            _ = try await supervisor.recordFailedSaga(record, context: .inProcess())
            var request = SupervisorV1.CompensateFailedSagaRequest()
            request.sagaId = saga.sagaId
            return try await supervisor.compensateFailedSaga(request, context: .inProcess())
        }
        do {
            let compensated = try await compensate(Self.failedSaga("saga-1", delivery: "dlv-1", envelope: try Self.createEnvelope("dlv-1")))
            #expect(compensated.compensations.map(\.state) == [.succeeded], "\(compensated.compensations)")
            var get = DeliveryV1.GetDeliveryRequest()
            get.deliveryId = "dlv-1"
            let failed = try await DeliveryV1.DeliveryService.Client(deliveryClient).getDelivery(get)
            #expect(failed.stage == .failed && failed.owner?.accountId == "acct")
            #expect(failed.pickupLocation == Self.pickup && failed.dropoffLocation == Self.dropoff)
            #expect(failed.validationViolations().isEmpty, "\(failed.validationViolations()): \(failed)")

            // No create request kept with the saga: no locations to record it with, so only a
            // delivery Delivery has would be marked; this one is not, and nothing is left pending.
            let skipped = try await compensate(Self.failedSaga("saga-2", delivery: "dlv-2", envelope: []))
            #expect(skipped.compensations.map(\.state) == [.skipped], "\(skipped.compensations)")
            get.deliveryId = "dlv-2"
            await #expect { _ = try await DeliveryV1.DeliveryService.Client(deliveryClient).getDelivery(get) } throws: { ($0 as? RPCError)?.code == .notFound }
        } catch {
            await deliveryClient.close(); await unreachable.close(); await server.shutdown()
            throw error
        }
        await deliveryClient.close(); await unreachable.close(); await server.shutdown()
    }
}
