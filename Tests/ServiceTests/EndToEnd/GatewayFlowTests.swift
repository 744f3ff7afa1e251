#if canImport(Glibc)
import Glibc
#endif
import DroneDeliveryAPI
import Foundation
import ProtobufKit
import RPC
import Testing
import TestSupport

/// An HTTP exchange through curl (an independent HTTP client).
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    /// The `stage` of each Server-Sent Event's JSON data, in order.
    /// The `id:` of each SSE event, in order.
    var eventIDs: [Int] {
        body.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int($0.dropFirst(4)) }
    }

    var eventStages: [String] {
        body.split(separator: "\n").filter { $0.hasPrefix("data: ") }.compactMap {
            ((try? JSONSerialization.jsonObject(with: Data($0.dropFirst(6).utf8))) as? [String: Any])?["stage"] as? String
        }
    }
}

extension RunningSystem {
    var gatewayURL: String { "http://127.0.0.1:\(port("gateway"))" }
    static let demoKey = "fdk_local_demo_key"

    func http(_ method: String, _ path: String, body: String? = nil, key: String? = RunningSystem.demoKey, headers: [String: String] = [:],
              http2: Bool = false) async throws -> HTTPAnswer {
        // curl waits for a body after `-X HEAD`; `-I` is its HEAD request.
        var arguments = ["-s", "-i"] + (method == "HEAD" ? ["-I"] : ["-X", method]) + [gatewayURL + path, "--max-time", "30"]
        if http2 { arguments.append("--http2-prior-knowledge") }
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if let body { arguments += ["-H", "content-type: application/json", "--data-binary", body] }
        let output = String(decoding: try await run("/usr/bin/curl", arguments), as: UTF8.self)
        guard let split = output.range(of: "\r\n\r\n") else { throw Failure("no HTTP answer: \(output)") }
        let lines = output[..<split.lowerBound].split(separator: "\r\n")
        let status = Int(lines.first?.split(separator: " ")[1] ?? "0") ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPAnswer(status: status, headers: fields, body: String(output[split.upperBound...]))
    }

    func createOverHTTP(_ body: String = RunningSystem.deliveryJSON, key: String = RunningSystem.demoKey) async throws -> String {
        let answer = try await http("POST", "/v1/deliveries", body: body, key: key)
        guard answer.status == 202, let id = answer.json["deliveryId"] as? String else { throw Failure("create answered \(answer.status): \(answer.body)") }
        return id
    }

    static let deliveryJSON = #"{"pickupLocation":{"latitude":47.6101,"longitude":-122.3421},"dropoffLocation":{"latitude":47.6205,"longitude":-122.3493},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5,"tag":"books"}}"#

    /// A second business, registered over the public API as any business registers: the answer
    /// carries its first (admin) key.
    func secondBusiness() async throws -> (account: String, key: String) {
        let answer = try await http("POST", "/v1/accounts", body: #"{"displayName":"Contoso","contactEmail":"ops@contoso.example"}"#, key: nil)
        guard answer.status == 201, let account = (answer.json["account"] as? [String: Any])?["accountId"] as? String,
              let key = (answer.json["adminKey"] as? [String: Any])?["secret"] as? String else {
            throw Failure("registration answered \(answer.status): \(answer.body)")
        }
        return (account, key)
    }
}

extension EndToEndTests {
    @Suite("End to end through the gateway: public JSON over HTTP", .serialized)
    struct GatewayFlowTests {
        @Test("the whole delivery over public JSON: 202 with Location, status until Completed, SSE tracking, history, summary")
        func deliveryOverJSON() async throws {
            try await withSystem { system in
                let created = try await system.http("POST", "/v1/deliveries", body: RunningSystem.deliveryJSON)
                #expect(created.status == 202)
                let id = try #require(created.json["deliveryId"] as? String)
                let location = try #require(created.headers["location"])
                #expect(location == "/v1/deliveries/\(id)/status")
                #expect(created.headers["x-request-id"] != nil)
                try await waitFor("the status to say COMPLETED") {
                    try await system.http("GET", location).json["stage"] as? String == "DELIVERY_STAGE_COMPLETED"
                }
                // Tracking as Server-Sent Events replays the whole flight and ends at Completed.
                let events = try await system.http("GET", "/v1/deliveries/\(id):track", headers: ["accept": "text/event-stream"])
                #expect(events.headers["content-type"] == "text/event-stream")
                let stages = events.eventStages
                #expect(stages.first == "DELIVERY_STAGE_CREATED" && stages.last == "DELIVERY_STAGE_COMPLETED")
                // Each event's id is its sequence; Last-Event-ID resumes after it (how EventSource
                // picks a dropped stream up, on any gateway replica), over the query's afterSequence.
                let ids = events.eventIDs
                #expect(ids.count == stages.count && ids == Array(1...ids.count), "\(ids)")
                let resumed = try await system.http("GET", "/v1/deliveries/\(id):track?afterSequence=0",
                                                    headers: ["accept": "text/event-stream", "last-event-id": "3"])
                #expect(resumed.status == 200 && resumed.eventIDs == Array(ids.dropFirst(3)), "\(resumed.body)")
                #expect(resumed.eventStages == Array(stages.dropFirst(3)))
                let badResume = try await system.http("GET", "/v1/deliveries/\(id):track", headers: ["accept": "text/event-stream", "last-event-id": "x7"])
                #expect(badResume.status == 400 && (badResume.json["message"] as? String ?? "").contains("Last-Event-ID"), "\(badResume.body)")
                // The same over HTTP/2 (prior knowledge, on the same port).
                let overHTTP2 = try await system.http("GET", "/v1/deliveries/\(id):track", headers: ["accept": "text/event-stream"], http2: true)
                #expect(overHTTP2.status == 200 && overHTTP2.body == events.body.replacingOccurrences(of: ": heartbeat\n\n", with: ""))
                let status2 = try await system.http("GET", location, http2: true)
                #expect(status2.status == 200 && status2.json["stage"] as? String == "DELIVERY_STAGE_COMPLETED")
                // HEAD is GET without the body, on both protocols: the same length, no bytes.
                for http2 in [false, true] {
                    let head = try await system.http("HEAD", location, http2: http2)
                    #expect(head.status == 200 && head.body.isEmpty, "HEAD over \(http2 ? "HTTP/2" : "HTTP/1.1"): \(head.status) \(head.body)")
                    #expect(head.headers["content-length"] == String(status2.body.utf8.count))
                    // On a stream: the head only; over HTTP/1.1 the connection closes after it, and says so.
                    let streamHead = try await system.http("HEAD", "/v1/deliveries/\(id):track", http2: http2)
                    #expect(streamHead.status == 200 && streamHead.body.isEmpty, "HEAD on a stream: \(streamHead.status) \(streamHead.body)")
                    if !http2 { #expect(streamHead.headers["connection"] == "close") }
                }
                let ndjson = try await system.http("GET", "/v1/deliveries/\(id):track?afterSequence=1")
                #expect(ndjson.headers["content-type"] == "application/x-ndjson")
                #expect(ndjson.body.split(separator: "\n").count == stages.count - 1)
                try await waitFor("the history to be complete") {
                    let events = try await system.http("GET", "/v1/deliveries/\(id)/history").json["events"] as? [[String: Any]] ?? []
                    return events.compactMap { $0["stage"] as? String }.last == "DELIVERY_STAGE_COMPLETED"
                }
                let summary = try await system.http("GET", "/v1/deliveries/\(id)/summary").json
                #expect(summary["partial"] as? Bool == false)
                #expect((summary["package"] as? [String: Any])?["weight"] as? Double == 1.5)
                #expect((summary["droneAssignment"] as? [String: Any])?["droneId"] as? String != nil)
                let listed = try await system.http("GET", "/v1/deliveries?stages=DELIVERY_STAGE_COMPLETED").json["deliveries"] as? [[String: Any]] ?? []
                #expect(listed.map { $0["deliveryId"] as? String } == [id])
                // Errors: google.rpc.Status bodies with the mapped HTTP status.
                let missing = try await system.http("GET", "/v1/deliveries/dlv-nope")
                #expect(missing.status == 404 && missing.json["code"] as? Int == 5)
                let bad = try await system.http("POST", "/v1/deliveries", body: #"{"packageInfo":{"weight":"heavy"}}"#)
                #expect(bad.status == 400 && (bad.json["message"] as? String ?? "").contains("packageInfo.weight"))
                let invalid = try await system.http("POST", "/v1/deliveries", body: #"{"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1}}"#)
                // A field rule (pickup_location is required): refused with a BadRequest naming the field.
                #expect(invalid.status == 400 && (invalid.json["message"] as? String ?? "").contains("pickup_location: value is required"), "\(invalid)")
                #expect(invalid.body.contains(#""field":"pickup_location""#), "\(invalid)")
            }
        }

        @Test("API keys: none or a bad one is 401; a business sees only its own deliveries")
        func authenticationAndTenants() async throws {
            try await withSystem { system in
                #expect(try await system.http("GET", "/v1/deliveries", key: nil).status == 401)
                #expect(try await system.http("GET", "/v1/deliveries", key: "fdk_wrong").status == 401)
                let mine = try await system.createOverHTTP()
                let (other, otherKey) = try await system.secondBusiness()
                #expect(try await system.http("GET", "/v1/deliveries/\(mine)", key: otherKey).status == 404, "another business's delivery does not exist for it")
                #expect(try await system.http("GET", "/v1/deliveries/\(mine)/status", key: otherKey).status == 404)
                #expect(try await system.http("DELETE", "/v1/deliveries/\(mine)", key: otherKey).status == 404)
                // Someone else's account is "not found", like their deliveries.
                let forged = try await system.http("POST", "/v1/deliveries", body: #"{"owner":{"accountId":"acct-demo"},"pickupLocation":{"latitude":1,"longitude":1},"dropoffLocation":{"latitude":1,"longitude":1.01},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1}}"#, key: otherKey)
                #expect(forged.status == 404)
                #expect(try await system.http("GET", "/v1/owners/acct-demo/deliveries", key: otherKey).status == 404)
                let theirs = try await system.createOverHTTP(key: otherKey)
                try await system.waitForStage(theirs, .completed)
                try await waitFor("the other business's list to hold its delivery") {
                    let listed = try await system.http("GET", "/v1/deliveries", key: otherKey).json["deliveries"] as? [[String: Any]] ?? []
                    return listed.compactMap { $0["deliveryId"] as? String } == [theirs]
                }
                var revoke = AccountsV1.RevokeApiKeyRequest()
                revoke.accountId = other
                revoke.keyId = "unknown"
                do {
                    _ = try await system.accounts.revokeApiKey(revoke)
                    Issue.record("revoking an unknown key succeeded")
                } catch let error as RPCError {
                    #expect(error.code == .notFound)
                }
            }
        }

        @Test("rate limit per key answers 429 with Retry-After; oversized bodies 413; CORS preflight; gzip")
        func offloading() async throws {
            let config = try makeTemporaryDirectory("gateway-config").appendingPathComponent("gateway.json")
            try Data(#"{"rateLimit":{"requestsPerSecond":0.2,"burst":3},"maxBodyBytes":2048,"gzipMinimumBytes":64}"#.utf8).write(to: config)
            try await withSystem(["FABRIKAM_GATEWAY_CONFIG": config.path]) { system in
                var statuses: [Int] = []
                for _ in 0..<5 { statuses.append(try await system.http("GET", "/v1/deliveries").status) }
                #expect(statuses.prefix(3).allSatisfy { $0 == 200 })
                #expect(statuses.last == 429)
                let limited = try await system.http("GET", "/v1/deliveries")
                #expect(limited.status == 429 && Int(limited.headers["retry-after"] ?? "") ?? 0 >= 1)
                let (_, otherKey) = try await system.secondBusiness()
                #expect(try await system.http("GET", "/v1/deliveries", key: otherKey).status == 200, "limits are per key")
                let big = try await system.http("POST", "/v1/deliveries", body: "{\"padding\":\"" + String(repeating: "x", count: 4096) + "\"}", key: otherKey)
                #expect(big.status == 413)
                let preflight = try await system.http("OPTIONS", "/v1/deliveries", key: nil,
                                                 headers: ["origin": "https://shop.example", "access-control-request-method": "POST"])
                #expect(preflight.status == 204)
                #expect(preflight.headers["access-control-allow-origin"] == "*")
                #expect(preflight.headers["access-control-allow-headers"]?.contains("authorization") == true)
                let spec = try await system.http("GET", "/openapi.json", key: nil, headers: ["accept-encoding": "gzip"])
                #expect(spec.headers["content-encoding"] == "gzip")
                let badTimeout = try await system.http("GET", "/v1/deliveries", key: otherKey, headers: ["grpc-timeout": "soon"])
                #expect(badTimeout.status == 400 && (badTimeout.json["message"] as? String ?? "").contains("grpc-timeout"))
            }
        }

        @Test("streams send heartbeats; a tracking request that breaks a field rule is 400 before any stream; create-or-replace is 201 then 204")
        func streamsAndStatuses() async throws {
            let config = try makeTemporaryDirectory("gateway-config").appendingPathComponent("gateway.json")
            try Data(#"{"heartbeatSeconds":0.2}"#.utf8).write(to: config)
            try await withSystem(["FABRIKAM_GATEWAY_CONFIG": config.path, "FABRIKAM_TIME_SCALE": "20"]) { system in
                let id = try await system.createOverHTTP()
                // Scheduled (in any stage: at this speed Created lasts only until the first position).
                try await waitFor("delivery \(id) to be scheduled") { _ = try await system.status(id); return true }
                let tracked = try await system.http("GET", "/v1/deliveries/\(id):track", headers: ["accept": "text/event-stream"])
                #expect(tracked.body.contains(": heartbeat"), "heartbeats while the drone flies")
                #expect(tracked.body.contains("DELIVERY_STAGE_COMPLETED"))
                // A tracking request that breaks a field rule is refused before any stream opens
                // (it was a 200 stream carrying the error); a stream that fails once open ends
                // with an error event (StreamResumeTests, against a backend that fails on cue).
                let refused = try await system.http("GET", "/v1/deliveries/\(id):track?afterSequence=-1", headers: ["accept": "text/event-stream"])
                #expect(refused.status == 400 && refused.body.contains("\"code\":3") && !refused.body.contains("event:"), "\(refused.status) \(refused.body)")
                let ndjsonRefused = try await system.http("GET", "/v1/deliveries/\(id):track?afterSequence=-1")
                #expect(ndjsonRefused.status == 400 && ndjsonRefused.body.contains("\"code\":3"), "\(ndjsonRefused.status) \(ndjsonRefused.body)")
                let put = #"{"size":"PACKAGE_SIZE_MEDIUM","weight":2.5,"tag":"gift"}"#
                #expect(try await system.http("PUT", "/v1/packages/pkg-gift-1", body: put).status == 201)
                #expect(try await system.http("PUT", "/v1/packages/pkg-gift-1", body: put).status == 204)
                let stored = try await system.http("GET", "/v1/packages/pkg-gift-1")
                #expect(stored.json["ownerId"] as? String == "acct-demo", "the owner is the caller's account")
            }
        }

        @Test("a 202's Location answers at once: REQUESTED while the request waits on the queue, for its owner only; tracking waits for it")
        func locationAnswersAtOnce() async throws {
            try await withSystem { system in
                try await system.kill("workflow", signal: SIGTERM)
                let created = try await system.http("POST", "/v1/deliveries", body: RunningSystem.deliveryJSON)
                #expect(created.status == 202)
                let id = try #require(created.json["deliveryId"] as? String)
                let location = try #require(created.headers["location"])
                let waiting = try await system.http("GET", location)
                #expect(waiting.status == 200 && waiting.json["stage"] as? String == "DELIVERY_STAGE_REQUESTED", "\(waiting.status) \(waiting.body)")
                #expect(waiting.json["updateTime"] as? String != nil, "the accept time")
                let (_, otherKey) = try await system.secondBusiness()
                #expect(try await system.http("GET", location, key: otherKey).status == 404, "another business's queued delivery does not exist for it")
                #expect(try await system.http("GET", "/v1/deliveries/dlv-0000000000000000/status").status == 404)
                // A delivery cancelled while its request still waits on the queue: the owner's
                // cancel is accepted (another business's is 404), and once Workflow runs, the
                // delivery ends CANCELLED (a long flight, so it cannot complete first).
                let far = RunningSystem.deliveryJSON.replacingOccurrences(of: #""latitude":47.6205"#, with: #""latitude":47.7205"#)
                let cancelled = try await system.createOverHTTP(far)
                #expect(try await system.http("DELETE", "/v1/deliveries/\(cancelled)", key: otherKey).status == 404)
                let cancel = try await system.http("DELETE", "/v1/deliveries/\(cancelled)?reason=changed+my+mind")
                #expect(cancel.status == 202 && cancel.headers["location"] == "/v1/deliveries/\(cancelled)/status", "\(cancel.status) \(cancel.body)")
                // A tracking stream opened now waits for Workflow, then follows the flight.
                let tracking = Task.detached { try await system.http("GET", "/v1/deliveries/\(id):track", headers: ["accept": "text/event-stream"]) }
                try await Task.sleep(for: .seconds(1))
                try await system.start("workflow")
                let events = try await tracking.value
                let stages = events.eventStages
                #expect(events.status == 200 && stages.first == "DELIVERY_STAGE_CREATED" && stages.last == "DELIVERY_STAGE_COMPLETED",
                        "\(events.status) \(stages)")
                try await system.waitForStage(id, .completed)
                #expect(try await system.http("GET", location).json["stage"] as? String == "DELIVERY_STAGE_COMPLETED")
                try await system.waitForStage(cancelled, .cancelled)
                try await waitFor("the cancelled delivery's history to end CANCELLED") {
                    try await system.historyStages(cancelled).last == .cancelled
                }
                // Ingestion down: Delivery's answer stands (404 for an id it does not know), not 503.
                try await system.kill("ingestion", signal: SIGTERM)
                #expect(try await system.http("GET", "/v1/deliveries/dlv-0000000000000000/status").status == 404)
            }
        }

        @Test("packages belong to their owner: B's delivery naming A's package is 409 at the gateway; past it, B's failed saga leaves A's package alone")
        func anotherBusinessesPackage() async throws {
            try await withSystem { system in
                // A (the demo business) has a package.
                #expect(try await system.http("PUT", "/v1/packages/pkg-a-1", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1.5,"tag":"a"}"#).status == 201)
                let (other, otherKey) = try await system.secondBusiness()
                // B names it, with a weight no drone can carry (the measured case: B's saga fails,
                // and its compensation deleted the package, A's).
                let heavy = RunningSystem.deliveryJSON.replacingOccurrences(of: #""packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5,"tag":"books"}"#,
                                                                            with: #""packageInfo":{"packageId":"pkg-a-1","size":"PACKAGE_SIZE_LARGE","weight":500}"#)
                let refused = try await system.http("POST", "/v1/deliveries", body: heavy, key: otherKey)
                #expect(refused.status == 409, "\(refused.status) \(refused.body)")
                // Past the gateway (an internal caller naming B): the Package service refuses the
                // id, the saga fails, and the Supervisor's compensation deletes only B's packages.
                var request = IngestionV1.CreateDeliveryRequest()
                var owner = CommonV1.Owner()
                owner.accountId = other
                request.owner = owner
                request.pickupLocation = CommonV1.Location(latitude: 47.6101, longitude: -122.3421)
                request.dropoffLocation = CommonV1.Location(latitude: 47.6205, longitude: -122.3493)
                var package = CommonV1.PackageInfo()
                package.packageId = "pkg-a-1"
                package.size = .large
                package.weight = 500
                request.packageInfo = package
                let accepted = try await system.ingestion.createDelivery(request)
                try await waitFor("B's failed saga to be compensated") {
                    try await system.failedSagas(accepted.deliveryId).first?.state == .compensated
                }
                let saga = try #require(try await system.sagas(accepted.deliveryId).first)
                #expect(saga.steps.first { $0.step == .putPackage }?.lastError?.code == Int32(RPCError.Code.alreadyExists.rawValue),
                        "the Package service refused another owner's id: \(saga.steps)")
                let stillThere = try await system.http("GET", "/v1/packages/pkg-a-1")
                #expect(stillThere.status == 200 && stillThere.json["ownerId"] as? String == "acct-demo" && stillThere.json["weight"] as? Double == 1.5,
                        "A's package: \(stillThere.status) \(stillThere.body)")
            }
        }

        @Test("the summary is partial, not an error, when a non-essential backend is down")
        func partialSummary() async throws {
            try await withSystem { system in
                let id = try await system.createOverHTTP()
                try await system.waitForStage(id, .completed)
                try await system.kill("package", signal: SIGTERM)
                let summary = try await system.http("GET", "/v1/deliveries/\(id)/summary")
                #expect(summary.status == 200)
                #expect(summary.json["partial"] as? Bool == true)
                #expect(summary.json["unavailable"] as? [String] == ["package"])
                #expect((summary.json["delivery"] as? [String: Any])?["deliveryId"] as? String == id)
            }
        }
    }
}
