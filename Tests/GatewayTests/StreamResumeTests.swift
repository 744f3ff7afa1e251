import DroneDeliveryAPI
import Foundation
import ProtobufKit
import RPC
import Testing

/// A tracking stream outlives the replica that serves it: the gateway opens it again after the
/// last event it sent when Delivery answers UNAVAILABLE mid-stream, and a client that lost the
/// gateway resumes with `Last-Event-ID` (each SSE event's id is its sequence).
@Suite("Resumable tracking streams")
struct StreamResumeTests {
    /// A delivery with six tracking events, the last one final: scheduled (1), four positions
    /// (2-5), cancelled (6).
    static func deliveryWithSixEvents(_ system: InProcessSystem) async throws -> (id: String, key: String) {
        let business = try await system.register("Fabrikam")
        #expect(await system.http("PUT", "/v1/packages/pkg-r", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1}"#, key: business.key).status == 201)
        try await system.scheduleDelivery("dlv-r", account: business.account, packageID: "pkg-r")
        _ = try await system.delivery.reportDronePositions { writer in
            var request = DeliveryV1.ReportDronePositionsRequest()
            request.positions = (0..<4).map { step in
                var position = TelemetryV1.DronePosition()
                position.droneId = "drone-dlv-r"
                position.deliveryId = "dlv-r"
                position.location = CommonV1.Location(latitude: 47.61 + Double(step) * 0.001, longitude: -122.34)
                position.phase = .headedToPickup
                position.sequence = Int64(step + 1)
                return position
            }
            try await writer.write(request)
        }
        var cancel = DeliveryV1.CancelDeliveryRequest()
        cancel.deliveryId = "dlv-r"
        cancel.reason = "test"
        _ = try await system.delivery.cancelDelivery(cancel)
        return ("dlv-r", business.key)
    }

    static func ids(_ body: String) -> [Int] {
        body.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int($0.dropFirst(4)) }
    }

    @Test("Delivery cuts the stream twice (UNAVAILABLE after two events): the client still gets events 1 to 6 once each, and no error")
    func gatewayReopensUpstream() async throws {
        let system = try await InProcessSystem()
        let (id, key) = try await Self.deliveryWithSixEvents(system)
        system.streamCuts.cut([2, 2])
        let answer = await system.httpStream("/v1/deliveries/\(id):track", key: key, headers: [("accept", "text/event-stream")])
        #expect(answer.status == 200)
        #expect(Self.ids(answer.body) == [1, 2, 3, 4, 5, 6], "\(answer.body)")
        #expect(!answer.body.contains("event: error"), "\(answer.body)")
        #expect(answer.body.contains("DELIVERY_STAGE_CANCELLED"))
        // Each reopening asked for what came after the last event sent.
        #expect(system.streamCuts.askedAfter == [0, 2, 4])
        await system.stop()
    }

    @Test("a stream that keeps failing ends with the UNAVAILABLE error after three reopenings")
    func reopeningIsBounded() async throws {
        let system = try await InProcessSystem()
        let (id, key) = try await Self.deliveryWithSixEvents(system)
        system.streamCuts.cut([1, 0, 0, 0, 0])
        let answer = await system.httpStream("/v1/deliveries/\(id):track", key: key, headers: [("accept", "text/event-stream")])
        #expect(Self.ids(answer.body) == [1], "\(answer.body)")
        #expect(answer.body.contains("event: error") && answer.body.contains("\"code\":14"), "\(answer.body)")
        #expect(system.streamCuts.askedAfter == [0, 1, 1, 1])
        await system.stop()
    }

    @Test("a client's grpc-timeout bounds a tracking stream: it ends with DEADLINE_EXCEEDED while the delivery goes on; without it the stream stays open")
    func clientDeadlineBoundsStream() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        #expect(await system.http("PUT", "/v1/packages/pkg-t", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1}"#, key: business.key).status == 201)
        try await system.scheduleDelivery("dlv-t", account: business.account, packageID: "pkg-t")  // scheduled, never moves
        /// The stream read to its end, or nil when it is still open after `limit`.
        func track(_ headers: [(String, String)], limit: Duration) async -> InProcessSystem.Answer? {
            await withTaskGroup(of: InProcessSystem.Answer?.self) { group in
                group.addTask { await system.httpStream("/v1/deliveries/dlv-t:track", key: business.key, headers: headers) }
                group.addTask { try? await Task.sleep(for: limit); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
        }
        // The client's deadline is 20 s: the first event surely comes before it on a loaded
        // machine (with 1 s, the body once held the DEADLINE_EXCEEDED error alone). It is longer
        // than the gateway's default deadline (10 s, which must not apply to a stream), so which
        // deadline ended the stream shows in a lower bound, which load cannot break; an upper
        // bound on the time taken (the test had "under 10 s") failed on a starved machine. The
        // 60 s limit is only a bound against a stream that never ends.
        let started = ContinuousClock.now
        let bounded = await track([("accept", "text/event-stream"), ("grpc-timeout", "20S")], limit: .seconds(60))
        let answer = try #require(bounded, "the stream was still open after 60 s")
        let took = ContinuousClock.now - started
        #expect(took >= .seconds(19), "the stream ended after \(took), before the client's 20 s deadline")
        #expect(answer.status == 200 && answer.body.contains("event: message"), "\(answer.body)")
        #expect(answer.body.contains("event: error") && answer.body.contains("\"code\":4"), "\(answer.body)")
        // No grpc-timeout: the gateway's default deadline does not cut it.
        #expect(await track([("accept", "text/event-stream")], limit: .seconds(2)) == nil)
        await system.stop()
    }

    @Test("Last-Event-ID resumes after that event, over the query's afterSequence; NDJSON carries no ids")
    func lastEventID() async throws {
        let system = try await InProcessSystem()
        let (id, key) = try await Self.deliveryWithSixEvents(system)
        let resumed = await system.httpStream("/v1/deliveries/\(id):track?afterSequence=1", key: key,
                                              headers: [("accept", "text/event-stream"), ("last-event-id", "4")])
        #expect(Self.ids(resumed.body) == [5, 6], "\(resumed.body)")
        let ndjson = await system.httpStream("/v1/deliveries/\(id):track", key: key, headers: [("last-event-id", "4")])
        #expect(ndjson.body.split(separator: "\n").count == 6 && !ndjson.body.contains("id: "), "\(ndjson.body)")
        let bad = await system.httpStream("/v1/deliveries/\(id):track", key: key, headers: [("accept", "text/event-stream"), ("last-event-id", "-3")])
        #expect(bad.status == 400 && bad.body.contains("Last-Event-ID"), "\(bad.body)")
        // A request that breaks a field rule (after_sequence >= 0) is a 400 with the violation,
        // not a 200 stream that carries the error.
        for accept in ["text/event-stream", "application/x-ndjson"] {
            let negative = await system.httpStream("/v1/deliveries/\(id):track?afterSequence=-3", key: key, headers: [("accept", accept)])
            #expect(negative.status == 400 && negative.body.contains("after_sequence") && negative.body.contains("BadRequest"), "\(negative)")
        }
        await system.stop()
    }
}
