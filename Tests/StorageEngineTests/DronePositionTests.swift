import DroneDeliveryAPI
import DroneScheduler
import Foundation
import ProtobufKit
import RPC
import ServiceKit
import Storage
import Testing
import TestSupport

/// The Drone Scheduler's TelemetryService (`ReportPositions`) over a real socket with the
/// project's own client, on each store engine: batches acknowledged per drone, duplicates and
/// late reports dropped, the positions shown by the fleet's reads, bad reports refused by name.
@Suite("Drone Scheduler keeps the fleet's reported positions, on SQLite and PostgreSQL")
struct DronePositionTests {
    typealias Telemetry = TelemetryV1.TelemetryService
    typealias Scheduler = DroneSchedulerV1.DroneSchedulerService

    /// A Drone Scheduler serving both its services on 127.0.0.1 (port 0) over a fresh store of
    /// `engine`, and a client of it.
    static func withScheduler(_ engine: TestEngine, _ body: (RPCClient) async throws -> Void) async throws {
        try await withDatabase(engine) { place in
            let store = try await place.open { try SQLDroneStore($0) }
            var router = Router()
            DroneSchedulerServiceLogic(store: store).register(in: &router)
            TelemetryServiceLogic(store: store).register(in: &router)
            let server = RPCServer(router: router)
            let client = RPCClient(host: "127.0.0.1", port: try await server.start())
            do { try await body(client) } catch {
                await client.close(); await server.shutdown()
                throw error
            }
            await client.close(); await server.shutdown()
        }
    }

    static func register(_ id: String, _ client: RPCClient) async throws {
        var drone = DroneSchedulerV1.Drone()
        drone.droneId = id
        drone.capacityKg = 5
        drone.maxPackageSize = .large
        drone.cruiseSpeedMps = 15
        drone.homeLocation = CommonV1.Location(latitude: 47.6, longitude: -122.3)
        var request = DroneSchedulerV1.RegisterDroneRequest()
        request.drone = drone
        _ = try await Scheduler.Client(client).registerDrone(request)
    }

    /// A report of `drone` at `latitude`, made at `second` (seconds after an arbitrary start),
    /// of flight `flight` of delivery d1.
    static func report(_ drone: String, sequence: Int64, second: Int64, latitude: Double, flight: String = "f1") -> TelemetryV1.DronePosition {
        var report = TelemetryV1.DronePosition()
        report.droneId = drone
        report.deliveryId = "d1"
        report.flightId = flight
        report.sequence = sequence
        report.time = Timestamp(seconds: 1_800_000_000 + second, nanos: 0)
        report.location = CommonV1.Location(latitude: latitude, longitude: -122.3)
        report.phase = .headedToPickup
        return report
    }

    static func batch(_ reports: TelemetryV1.DronePosition...) -> TelemetryV1.ReportPositionsRequest {
        var batch = TelemetryV1.ReportPositionsRequest()
        batch.positions = reports
        return batch
    }

    /// Sends each batch and reads its answer before the next, then half-closes and reads to the
    /// end of the stream: each answer's acks as "drone:sequence".
    static func send(_ batches: [TelemetryV1.ReportPositionsRequest], _ client: RPCClient) async throws -> [[String]] {
        try await Telemetry.Client(client).reportPositions(options: CallOptions(timeout: .seconds(30))) { writer, responses in
            var answers: [[String]] = []
            var iterator = responses.makeAsyncIterator()
            for batch in batches {
                try await writer.write(batch)
                let answer = try #require(try await iterator.next(), "no answer to batch \(answers.count + 1)")
                answers.append(answer.acks.map { "\($0.droneId):\($0.sequence)" })
            }
            writer.finish()
            #expect(try await iterator.next() == nil, "the stream ends once the client half-closes")
            return answers
        }
    }

    /// Each registered drone's position (latitude) and its time, by drone id, as ListDrones shows them.
    static func positions(_ client: RPCClient) async throws -> [String: (latitude: Double?, second: Int64?)] {
        let listed = try await Scheduler.Client(client).listDrones(DroneSchedulerV1.ListDronesRequest())
        return Dictionary(uniqueKeysWithValues: listed.drones.map {
            ($0.droneId, ($0.position?.latitude, $0.positionTime.map { $0.seconds - 1_800_000_000 }))
        })
    }

    @Test("each batch is answered with one ack per drone, in order of appearance, carrying the highest sequence stored", arguments: TestEngine.available)
    func batchesAckedPerDrone(engine: TestEngine) async throws {
        try await Self.withScheduler(engine) { client in
            try await Self.register("dr1", client)
            try await Self.register("dr2", client)
            let answers = try await Self.send([
                Self.batch(Self.report("dr2", sequence: 1, second: 1, latitude: 47.1), Self.report("dr1", sequence: 1, second: 1, latitude: 47.2),
                           Self.report("dr2", sequence: 2, second: 2, latitude: 47.3)),
                Self.batch(Self.report("dr1", sequence: 2, second: 2, latitude: 47.4)),
            ], client)
            #expect(answers == [["dr2:2", "dr1:1"], ["dr1:2"]])
            // A second stream on the same connection goes on where the first left off.
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 3, second: 3, latitude: 47.5))], client) == [["dr1:3"]])
        }
    }

    @Test("duplicates and older sequences are not applied; unnumbered reports and other flights go by time", arguments: TestEngine.available)
    func duplicatesAndLateReportsDropped(engine: TestEngine) async throws {
        try await Self.withScheduler(engine) { client in
            try await Self.register("dr1", client)
            let answers = try await Self.send([
                Self.batch(Self.report("dr1", sequence: 5, second: 5, latitude: 47.05)),
                // A resent duplicate and a late one: neither moves the drone, the ack stays 5.
                Self.batch(Self.report("dr1", sequence: 5, second: 9, latitude: 11), Self.report("dr1", sequence: 3, second: 9, latitude: 12)),
            ], client)
            #expect(answers == [["dr1:5"], ["dr1:5"]])
            var shown = try await Self.positions(client)["dr1"]
            #expect(shown?.latitude == 47.05 && shown?.second == 5, "\(String(describing: shown))")
            // Unnumbered (sequence 0): an older one is dropped, a newer one taken; the ack keeps 5.
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 0, second: 4, latitude: 13))], client) == [["dr1:5"]])
            #expect(try await Self.positions(client)["dr1"]?.latitude == 47.05)
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 0, second: 6, latitude: 47.06))], client) == [["dr1:5"]])
            shown = try await Self.positions(client)["dr1"]
            #expect(shown?.latitude == 47.06 && shown?.second == 6, "\(String(describing: shown))")
            // A new flight numbers from 1 again and is newer: taken. A late report of the old
            // flight, numbered higher but older, is not.
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 1, second: 7, latitude: 47.07, flight: "f2"))], client) == [["dr1:1"]])
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 6, second: 5, latitude: 14))], client) == [["dr1:1"]])
            shown = try await Self.positions(client)["dr1"]
            #expect(shown?.latitude == 47.07 && shown?.second == 7, "\(String(describing: shown))")
        }
    }

    @Test("the latest reported position shows in ListDrones and GetFleetStatus, also for a drone that registers after reporting", arguments: TestEngine.available)
    func positionsVisible(engine: TestEngine) async throws {
        try await Self.withScheduler(engine) { client in
            try await Self.register("dr1", client)
            let before = try await Self.positions(client)["dr1"]
            #expect(before?.latitude == 47.6 && before?.second == nil, "registered at home, no report yet")
            let answers = try await Self.send([
                Self.batch(Self.report("dr1", sequence: 1, second: 1, latitude: 47.61), Self.report("dr1", sequence: 2, second: 2, latitude: 47.62),
                           Self.report("dr-new", sequence: 1, second: 2, latitude: 47.7)),
            ], client)
            #expect(answers == [["dr1:2", "dr-new:1"]], "a drone the fleet does not know yet is stored and acknowledged")
            let shown = try await Self.positions(client)["dr1"]
            #expect(shown?.latitude == 47.62 && shown?.second == 2, "\(String(describing: shown))")
            var request = DroneSchedulerV1.GetFleetStatusRequest()
            request.includeDrones = true
            let fleet = try await Scheduler.Client(client).getFleetStatus(request)
            #expect(fleet.drones.first { $0.droneId == "dr1" }?.position?.latitude == 47.62)
            #expect(try await Self.positions(client)["dr-new"] == nil, "not in the fleet before it registers")
            try await Self.register("dr-new", client)
            #expect(try await Self.positions(client)["dr-new"]?.latitude == 47.7, "its reported position, not its home")
        }
    }

    @Test("a batch with a bad report is refused whole with INVALID_ARGUMENT naming the field; batches before it stay stored", arguments: TestEngine.available)
    func badReportRefused(engine: TestEngine) async throws {
        try await Self.withScheduler(engine) { client in
            try await Self.register("dr1", client)
            var offEarth = Self.report("dr1", sequence: 3, second: 3, latitude: 91)
            offEarth.location?.longitude = -122.3
            var noDrone = Self.report("", sequence: 4, second: 4, latitude: 47.64)
            noDrone.location = nil
            let error = await #expect(throws: RPCError.self) {
                _ = try await Self.send([
                    Self.batch(Self.report("dr1", sequence: 1, second: 1, latitude: 47.61)),
                    Self.batch(Self.report("dr1", sequence: 2, second: 2, latitude: 47.62), offEarth, noDrone),
                ], client)
            }
            #expect(error?.code == .invalidArgument, "\(String(describing: error))")
            let fields = try error?.detail(Google.Rpc.BadRequest.self)?.fieldViolations.map(\.field) ?? []
            #expect(fields == ["positions[1].location.latitude", "positions[2].drone_id", "positions[2].location"], "\(String(describing: error))")
            #expect(error?.message.contains("positions[1].location.latitude") == true, "\(String(describing: error))")
            let shown = try await Self.positions(client)["dr1"]
            #expect(shown?.latitude == 47.61 && shown?.second == 1, "the first batch stored, nothing of the refused one")
            // Too many reports in one batch: refused naming `positions`.
            var many = TelemetryV1.ReportPositionsRequest()
            many.positions = (1...(TelemetryServiceLogic.maxReportsPerBatch + 1)).map { Self.report("dr1", sequence: Int64($0), second: 10, latitude: 47) }
            let tooMany = await #expect(throws: RPCError.self) { _ = try await Self.send([many], client) }
            #expect(try tooMany?.detail(Google.Rpc.BadRequest.self)?.fieldViolations.map(\.field) == ["positions"], "\(String(describing: tooMany))")
        }
    }

    @Test("a client that cancels mid-stream ends it; what was acknowledged is stored and the next stream is served", arguments: TestEngine.available)
    func cancelledStreamEnds(engine: TestEngine) async throws {
        try await Self.withScheduler(engine) { client in
            try await Self.register("dr1", client)
            // The body returns without half-closing: the client cancels the stream (RST_STREAM).
            let first = try await Telemetry.Client(client).reportPositions(options: CallOptions(timeout: .seconds(30))) { writer, responses in
                try await writer.write(Self.batch(Self.report("dr1", sequence: 1, second: 1, latitude: 47.61)))
                var iterator = responses.makeAsyncIterator()
                return try await iterator.next()?.acks.map(\.sequence)
            }
            #expect(first == [1])
            #expect(try await Self.send([Self.batch(Self.report("dr1", sequence: 2, second: 2, latitude: 47.62))], client) == [["dr1:2"]])
            #expect(try await Self.positions(client)["dr1"]?.latitude == 47.62)
        }
    }
}
