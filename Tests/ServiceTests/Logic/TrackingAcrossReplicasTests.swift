@testable import Delivery
import DroneDeliveryAPI
import DroneSimulator
import Foundation
import Messaging
import ProtobufKit
import RPC
import ServiceKit
import Storage
import Synchronization
import Testing
import TestSupport

/// A live feed that loses the announcements of chosen tracking sequences (a replica that died
/// between commit and announcement, NATS restarting), passing the rest to `inner`.
final class LossyFeed: LiveFeed {
    let inner: any LiveFeed
    let lost: Set<Int64>
    init(_ inner: any LiveFeed, losing lost: Set<Int64>) { self.inner = inner; self.lost = lost }

    func announce(_ payload: [UInt8], topic: String, key: String) async throws {
        if let event = try? DeliveryV1.DeliveryTrackingEvent(serializedBytes: payload), lost.contains(event.sequence) { return }
        try await inner.announce(payload, topic: topic, key: key)
    }
    func follow(topic: String, key: String) async throws -> LiveFollower { try await inner.follow(topic: topic, key: key) }
    func followerCount() -> Int { inner.followerCount() }
}

/// Delivery replicas in process, each an RPC server with its own logic, store handle and live
/// feed, against one real simulator (flight control); tracking streams read through real RPC.
struct DeliveryReplicas {
    let pickup = CommonV1.Location(latitude: 47.6101, longitude: -122.3421)
    let dropoff = CommonV1.Location(latitude: 47.6205, longitude: -122.3493)
    var logics: [DeliveryServiceLogic] = []
    var clients: [RPCClient] = []
    var servers: [RPCServer] = []

    /// One replica per (store, feed); `reread` is their tracking streams' quiet-spell re-read.
    static func start(_ replicas: [(store: any DeliveryStore, feed: any LiveFeed)], reread: Duration,
                      _ body: (DeliveryReplicas) async throws -> Void) async throws {
        let folder = try makeTemporaryDirectory("delivery-replicas")
        let unreachable = RPCClient(host: "127.0.0.1", port: 1)  // the simulator's reports are made by the test
        let simulator = DroneSimulator(store: try SQLiteFlightStore(path: folder.appendingPathComponent("sim.sqlite").path), delivery: unreachable)
        var system = DeliveryReplicas()
        _ = try await simulator.createFleet(count: 1, base: system.pickup)
        var simulatorRouter = Router()
        simulator.register(in: &simulatorRouter)
        let simulatorServer = RPCServer(router: simulatorRouter)
        let flightControl = RPCClient(host: "127.0.0.1", port: try await simulatorServer.start())
        for replica in replicas {
            let logic = DeliveryServiceLogic(store: replica.store, flightControl: flightControl, liveFeed: replica.feed, trackingReread: reread)
            var router = Router()
            logic.register(in: &router)
            let server = RPCServer(router: router)
            system.clients.append(RPCClient(host: "127.0.0.1", port: try await server.start()))
            system.servers.append(server)
            system.logics.append(logic)
        }
        func stop() async {
            for client in system.clients { await client.close() }
            for server in system.servers { await server.shutdown() }
            await flightControl.close(); await unreachable.close(); await simulatorServer.shutdown()
        }
        do { try await body(system) } catch {
            await stop()
            throw error
        }
        await stop()
    }

    func schedule(through replica: Int) async throws {
        _ = try await logics[replica].scheduleDelivery(DeliveryLogicTests.scheduleRequest(from: pickup, to: dropoff), context: .inProcess())
    }

    /// Reports the flight from takeoff to drop-off through `replica`: three positions, stages
    /// headed to pickup, headed to drop-off, completed (sequences 2, 3, 4).
    func fly(through replica: Int) async throws {
        let phases: [(TelemetryV1.FlightPhase, CommonV1.Location)] = [
            (.headedToPickup, CommonV1.Location(latitude: 47.60, longitude: -122.34)),
            (.headedToDropoff, pickup.interpolated(to: dropoff, fraction: 0.5)),
            (.atDropoff, dropoff),
        ]
        for (phase, location) in phases {
            #expect(try await logics[replica].apply(DeliveryLogicTests.position(phase, at: location)) == 1)
        }
    }

    /// Opens TrackDelivery on `viewer`, waits until it has replayed the stored first event, flies
    /// the delivery through `flier`, and waits (bounded) for the stream to end on its own.
    /// Returns whether it ended, and what it saw.
    func trackWhileFlying(viewer: Int, flier: Int) async throws -> (ended: Bool, seen: Seen) {
        let seen = Seen()
        let tracking = track(on: viewer, into: seen)
        defer { tracking.cancel() }
        let replayed = try await waitUntil { seen.sequences == [1] }
        #expect(replayed, "the replay from the store: \(seen.sequences)")
        try await fly(through: flier)
        let ended = try await waitUntil(timeout: .seconds(30)) { seen.ended.withLock { $0 } }
        // Ended on its own, without an error (a stuck stream is cancelled by the defer instead).
        if ended { try await tracking.value }
        return (ended, seen)
    }

    /// Opens TrackDelivery on `replica` (over RPC) and collects what it streams, until it ends.
    func track(on replica: Int, into seen: Seen) -> Task<Void, any Error> {
        let client = DeliveryV1.DeliveryService.Client(clients[replica])
        return Task {
            var request = DeliveryV1.TrackDeliveryRequest()
            request.deliveryId = "d1"
            try await client.trackDelivery(request, options: CallOptions(timeout: .seconds(60))) { stream in
                for try await event in stream { seen.events.withLock { $0.append(event) } }
                seen.ended.withLock { $0 = true }
            }
        }
    }

    final class Seen: Sendable {
        let events = Mutex<[DeliveryV1.DeliveryTrackingEvent]>([])
        let ended = Mutex(false)
        var sequences: [Int64] { events.withLock { $0.map(\.sequence) } }
        var stages: [CommonV1.DeliveryStage] { events.withLock { $0.map(\.stage) } }
    }
}

@Suite("TrackDelivery across replicas, lost announcements and quiet spells", .serialized)
struct TrackingAcrossReplicasTests {
    static let postgresURL = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let natsURL = ProcessInfo.processInfo.environment["FABRIKAM_TEST_NATS_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"
    /// Long enough that no stream in these tests re-reads its store unless the test wants it to:
    /// what reaches the viewer came through the live feed (or its gap fill).
    static let never = Duration.seconds(3600)

    /// A store and live feed per replica as delivery-service builds them from its flags
    /// (`--store`, `--store-schema`, `--broker`, `--broker-namespace`).
    static func replica(store url: String, schema: String, broker: String, namespace: String) async throws -> (store: any DeliveryStore, feed: any LiveFeed) {
        let configuration = try Configuration(arguments: ["--store", url, "--store-schema", schema, "--store-pool-size", "2",
                                                          "--broker", broker, "--broker-namespace", namespace],
                                              environment: TestNATS.serviceEnvironment, known: Configuration.brokerFlags + Configuration.storeFlags)
        let location = try serviceStore(configuration, service: "delivery", file: "delivery.sqlite").location
        let store = try await onOwnThread { try SQLDeliveryStore(location) }
        return (store, try await openLiveFeed(configuration))
    }

    @Test("two replicas on one PostgreSQL and one NATS: a stream opened on B gets the stages committed through A, to the final one",
          .enabled(if: (postgresURL != nil && natsURL != nil) || required))
    func streamOnOtherReplica() async throws {
        guard let postgres = Self.postgresURL, let nats = Self.natsURL else {
            Issue.record("FABRIKAM_TEST_POSTGRES_URL and FABRIKAM_TEST_NATS_URL must be set (FABRIKAM_REQUIRE_ENGINES=1): run through tools/with-postgres.sh and tools/with-nats.sh")
            return
        }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let namespace = "t" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        defer { _ = try? runCollecting("/usr/bin/psql", [postgres, "-q", "-c", "DROP SCHEMA IF EXISTS \(schema) CASCADE"]) }
        let a = try await Self.replica(store: postgres, schema: String(schema), broker: nats, namespace: String(namespace))
        let b = try await Self.replica(store: postgres, schema: String(schema), broker: nats, namespace: String(namespace))
        try await DeliveryReplicas.start([a, b], reread: Self.never) { system in
            try await system.schedule(through: 0)
            // B replays what A stored so far (it shares the database), then follows.
            let (ended, seen) = try await system.trackWhileFlying(viewer: 1, flier: 0)
            #expect(ended, "the stream on B ended; it saw \(seen.stages)")
            #expect(seen.sequences == [1, 2, 3, 4])
            #expect(seen.stages == [.created, .headedToPickup, .headedToDropoff, .completed])
        }
    }

    @Test("an event committed without its announcement still reaches the viewer, in order, when the next one is announced (gap fill)")
    func gapFill() async throws {
        let folder = try makeTemporaryDirectory("tracking-gap")
        let store = try SQLiteDeliveryStore(path: folder.appendingPathComponent("delivery.sqlite").path)
        try await DeliveryReplicas.start([(store, LossyFeed(InProcessLiveFeed(), losing: [2]))], reread: Self.never) { system in
            try await system.schedule(through: 0)
            let (ended, seen) = try await system.trackWhileFlying(viewer: 0, flier: 0)
            #expect(ended, "the stream ended; it saw \(seen.sequences)")
            #expect(seen.sequences == [1, 2, 3, 4], "sequence 2 was never announced: read from the store when 3 came")
        }
    }

    @Test("a final event whose announcement was lost still ends the stream: a quiet stream re-reads the store")
    func lostFinalAnnouncement() async throws {
        let folder = try makeTemporaryDirectory("tracking-final")
        let store = try SQLiteDeliveryStore(path: folder.appendingPathComponent("delivery.sqlite").path)
        try await DeliveryReplicas.start([(store, LossyFeed(InProcessLiveFeed(), losing: [4]))], reread: .milliseconds(300)) { system in
            try await system.schedule(through: 0)
            let (ended, seen) = try await system.trackWhileFlying(viewer: 0, flier: 0)
            #expect(ended, "the stream ended; it saw \(seen.stages)")
            #expect(seen.stages == [.created, .headedToPickup, .headedToDropoff, .completed])
        }
    }
}
