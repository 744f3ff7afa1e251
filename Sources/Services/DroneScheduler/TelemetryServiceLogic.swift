import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit

/// The Drone Scheduler's TelemetryService: it keeps the fleet's positions from the drones'
/// reports, so that GetFleetStatus and ListDrones show where each drone is and AssignDrone picks
/// the drone nearest the pickup by where it really is.
///
/// Each batch of `ReportPositions` is stored (one short write, no fleet-wide lock: see
/// `DroneStore.recordPositions`), then answered with one Ack per drone of the batch, in the order
/// the drones first appear in it, carrying the highest sequence stored for that drone's latest
/// flight. Duplicates and late reports (a sequence not above the stored one of the same flight, an
/// unnumbered report or another flight's that is not newer in time) are dropped, not refused:
/// the ack still tells the sender it may forget them.
///
/// - Unknown drones: a report of a drone that is not registered is stored and acknowledged like
///   any other, and its position shows once the drone registers. One stream carries the whole
///   fleet's reports, and a refusal ends it for every drone; a drone that reports before its
///   registration arrives is an ordinary race, not an error.
/// - Bad input: a batch with a report that breaks a rule is refused whole with INVALID_ARGUMENT
///   (a google.rpc.BadRequest names each field, as `positions[2].location.latitude`), nothing of
///   it stored, and the stream ends; batches acknowledged before it stay stored. The rules: a
///   drone id and a location, Location's field rules (which the runtime leaves to the handler:
///   `positions` is `ignore = IGNORE_ALWAYS`), a sequence of 0 or more, and at most
///   `maxReportsPerBatch` reports. Refusing, not skipping, because an ack promises that every
///   report up to its sequence is stored.
/// - Memory: one batch at a time is read, stored and acknowledged before the next is read, and
///   reading is what opens the stream's flow-control window, so a sender faster than the store
///   is held back rather than buffered; one message is at most the server's maximum message size
///   (4 MiB by default, `RPCServer.Options.maxMessageSize`).
/// - A client that half-closes ends the call with OK once its last batch is acknowledged; one that
///   cancels ends it with CANCELLED, the batch being stored (if any) committed or rolled back whole.
public struct TelemetryServiceLogic: TelemetryV1.TelemetryService.Handler {
    /// The most reports one batch may carry: about 100 KiB of reports, one short write.
    public static let maxReportsPerBatch = 1000
    let store: any DroneStore

    public init(store: any DroneStore) { self.store = store }

    public func reportPositions(_ requests: RequestStream<TelemetryV1.ReportPositionsRequest>, writer: ResponseWriter<TelemetryV1.ReportPositionsResponse>,
                                context: ServerContext) async throws {
        for try await batch in requests {
            try Self.checkReports(batch)
            let stored = try await store.recordPositions(batch.positions, receivedAt: .now)
            var response = TelemetryV1.ReportPositionsResponse()
            var acknowledged = Set<String>()
            for report in batch.positions where acknowledged.insert(report.droneId).inserted {
                var ack = TelemetryV1.ReportPositionsResponse.Ack()
                ack.droneId = report.droneId
                ack.sequence = stored[report.droneId] ?? 0
                response.acks.append(ack)
            }
            try await writer.write(response)
        }
    }

    /// Throws INVALID_ARGUMENT naming every field of the batch that breaks a rule.
    static func checkReports(_ batch: TelemetryV1.ReportPositionsRequest) throws {
        var validator = Validator()
        validator.require(batch.positions.count <= maxReportsPerBatch, "positions",
                          "at most \(maxReportsPerBatch) reports in one batch, got \(batch.positions.count)")
        if batch.positions.count <= maxReportsPerBatch {
            for (index, report) in batch.positions.enumerated() {
                let path = Validation.path("positions", index: index)
                validator.require(!report.droneId.isEmpty, path + ".drone_id", "value is required")
                validator.require(report.location != nil, path + ".location", "value is required")
                validator.require(report.sequence >= 0, path + ".sequence", "must be 0 (unnumbered) or more")
                validator.requireFieldRules(of: report, at: path)
            }
        }
        try validator.check()
    }
}
