import DroneDeliveryAPI
import Gateway
import GRPCProtos
import ProtobufKit
import Testing

/// The golden table: HTTP requests and the RPC each must become (method and request message,
/// as canonical JSON), and requests that must be refused with the status and a message naming
/// what was wrong. Built from the same annotations the running gateway uses.
@Suite("Transcoding: HTTP requests to RPCs, by the google.api.http rules")
struct TranscodingGoldenTests {
    static let files = wellKnownFiles + grpcProtoFiles + droneDeliveryProtoFiles
    let routes = try! RouteTable(files: files, services: Gateway.publicServices)
    let transcoder = Transcoder(schema: Schema(files: files))

    struct Case: Sendable, CustomTestStringConvertible {
        var method: String
        var target: String
        var body: String = ""
        var rpc: String
        var request: String
        var testDescription: String { "\(method) \(target)" }
    }

    static let cases: [Case] = [
        Case(method: "POST", target: "/v1/deliveries", body: #"{"owner":{"accountId":"a"},"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5},"expedited":true}"#,
             rpc: "/fabrikam.dronedelivery.ingestion.v1.IngestionService/CreateDelivery",
             request: #"{"owner":{"accountId":"a"},"expedited":true,"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1.5}}"#),
        Case(method: "PATCH", target: "/v1/deliveries/d%2D1/schedule", body: #"{"expedited":false,"pickupTime":"2026-01-01T10:00:00Z"}"#,
             rpc: "/fabrikam.dronedelivery.ingestion.v1.IngestionService/RescheduleDelivery",
             request: #"{"deliveryId":"d-1","pickupTime":"2026-01-01T10:00:00Z","expedited":false}"#),
        // The path wins over the body, whichever name (JSON or proto) the body used.
        Case(method: "PATCH", target: "/v1/deliveries/d1/schedule", body: #"{"delivery_id":"other","expedited":true}"#,
             rpc: "/fabrikam.dronedelivery.ingestion.v1.IngestionService/RescheduleDelivery", request: #"{"deliveryId":"d1","expedited":true}"#),
        Case(method: "PUT", target: "/v1/deliveries/d1/schedule", body: #"{"deadline":"2026-01-02T00:00:00Z"}"#,
             rpc: "/fabrikam.dronedelivery.ingestion.v1.IngestionService/RescheduleDelivery",
             request: #"{"deliveryId":"d1","deadline":"2026-01-02T00:00:00Z"}"#),
        Case(method: "DELETE", target: "/v1/deliveries/d1?reason=changed+my+mind",
             rpc: "/fabrikam.dronedelivery.ingestion.v1.IngestionService/CancelDelivery", request: #"{"deliveryId":"d1","reason":"changed my mind"}"#),
        Case(method: "GET", target: "/v1/deliveries/d1", rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDelivery", request: #"{"deliveryId":"d1"}"#),
        Case(method: "GET", target: "/v1/deliveries/d1/status", rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/GetDeliveryStatus", request: #"{"deliveryId":"d1"}"#),
        Case(method: "GET", target: "/v1/deliveries/d1:track?afterSequence=5",
             rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/TrackDelivery", request: #"{"deliveryId":"d1","afterSequence":"5"}"#),
        Case(method: "GET", target: "/v1/deliveries?stages=DELIVERY_STAGE_CREATED&stages=DELIVERY_STAGE_COMPLETED&page_size=10",
             rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/ListDeliveries",
             request: #"{"stages":["DELIVERY_STAGE_CREATED","DELIVERY_STAGE_COMPLETED"],"pageSize":10}"#),
        Case(method: "GET", target: "/v1/owners/acme/deliveries?userId=u7", rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/ListDeliveries",
             request: #"{"ownerId":"acme","userId":"u7"}"#),
        Case(method: "POST", target: "/v1/deliveries/d1:confirm", body: #"{"confirmationType":"CONFIRMATION_TYPE_PICTURE","blob":"AAEC"}"#,
             rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/ConfirmDelivery",
             request: #"{"deliveryId":"d1","confirmation":{"confirmationType":"CONFIRMATION_TYPE_PICTURE","blob":"AAEC"}}"#),
        Case(method: "POST", target: "/v1/deliveries/d1:notifyMe", body: #"{"emailAddress":"a@b.example"}"#,
             rpc: "/fabrikam.dronedelivery.delivery.v1.DeliveryService/NotifyMe", request: #"{"deliveryId":"d1","emailAddress":"a@b.example"}"#),
        Case(method: "GET", target: "/v1/owners/acme/history?startTime=2026-01-01T00:00:00Z&stages=5",
             rpc: "/fabrikam.dronedelivery.deliveryhistory.v1.DeliveryHistoryService/ListOwnerHistory",
             request: #"{"ownerId":"acme","startTime":"2026-01-01T00:00:00Z","stages":["DELIVERY_STAGE_COMPLETED"]}"#),
        Case(method: "PUT", target: "/v1/packages/p1", body: #"{"size":"PACKAGE_SIZE_LARGE","weight":3}"#,
             rpc: "/fabrikam.dronedelivery.package.v1.PackageService/PutPackage",
             request: #"{"package":{"packageId":"p1","size":"PACKAGE_SIZE_LARGE","weight":3}}"#),
        Case(method: "PATCH", target: "/v1/packages/p1?updateMask=weight,tag", body: #"{"weight":2}"#,
             rpc: "/fabrikam.dronedelivery.package.v1.PackageService/UpdatePackage",
             request: #"{"package":{"packageId":"p1","weight":2},"updateMask":"weight,tag"}"#),
        Case(method: "GET", target: "/v1/owners/acme/packages:summary", rpc: "/fabrikam.dronedelivery.package.v1.PackageService/GetPackageSummary",
             request: #"{"ownerId":"acme"}"#),
        Case(method: "GET", target: "/v1/owners/acme/utilization?year=2026&month=11",
             rpc: "/fabrikam.dronedelivery.dronescheduler.v1.DroneSchedulerService/GetDroneUtilization", request: #"{"ownerId":"acme","year":2026,"month":11}"#),
        Case(method: "GET", target: "/v1/accounts/acme", rpc: "/fabrikam.dronedelivery.accounts.v1.AccountsService/GetAccount", request: #"{"name":"accounts/acme"}"#),
        Case(method: "POST", target: "/v1/accounts/acme/apikeys", body: #"{"displayName":"ci","ttl":"3600s"}"#,
             rpc: "/fabrikam.dronedelivery.accounts.v1.AccountsService/IssueApiKey", request: #"{"accountId":"acme","displayName":"ci","ttl":"3600s"}"#),
        Case(method: "DELETE", target: "/v1/accounts/acme/apikeys/k1", rpc: "/fabrikam.dronedelivery.accounts.v1.AccountsService/RevokeApiKey",
             request: #"{"accountId":"acme","keyId":"k1"}"#),
    ]

    @Test("a request becomes the right RPC and request message", arguments: cases)
    func transcodes(_ example: Case) throws {
        guard case .found(let route, let variables) = routes.match(method: example.method, path: path(example.target)) else {
            Issue.record("no route for \(example.method) \(example.target)")
            return
        }
        #expect(route.method.path == example.rpc)
        let json = try transcoder.requestJSON(route: route, variables: variables, query: query(example.target), body: Array(example.body.utf8))
        #expect(try canonical(route.input, json) == canonical(route.input, try JSONParser.parse(example.request)))
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        var method: String
        var target: String
        var body: String = ""
        var status: Int
        var mentions: String
        var testDescription: String { "\(method) \(target) -> \(status)" }
    }

    static let refusals: [Refusal] = [
        Refusal(method: "POST", target: "/v1/deliveries", body: #"{"packageInfo":{"weight":"heavy"}}"#, status: 400, mentions: "packageInfo.weight"),
        Refusal(method: "POST", target: "/v1/deliveries", body: #"{"owner":"#, status: 400, mentions: "not valid JSON"),
        Refusal(method: "POST", target: "/v1/deliveries", body: #"[1,2]"#, status: 400, mentions: "JSON object"),
        Refusal(method: "GET", target: "/v1/deliveries?pageSize=ten", status: 400, mentions: "pageSize"),
        Refusal(method: "GET", target: "/v1/deliveries?stages=DELIVERY_STAGE_LOST", status: 400, mentions: "must be one of"),
        Refusal(method: "GET", target: "/v1/deliveries?colour=red", status: 400, mentions: "no field \"colour\""),
        Refusal(method: "GET", target: "/v1/deliveries/d1", body: "{}", status: 400, mentions: "takes no request body"),
        Refusal(method: "POST", target: "/v1/deliveries?expedited=true", body: "{}", status: 400, mentions: "from the body"),
    ]

    @Test("bad input is refused with a message naming what was wrong", arguments: refusals)
    func refuses(_ example: Refusal) throws {
        guard case .found(let route, let variables) = routes.match(method: example.method, path: path(example.target)) else {
            Issue.record("no route for \(example.method) \(example.target)")
            return
        }
        do {
            let json = try transcoder.requestJSON(route: route, variables: variables, query: query(example.target), body: Array(example.body.utf8))
            _ = try canonical(route.input, json)
            Issue.record("accepted \(example.target)")
        } catch let error as TranscodingError {
            #expect(error.status == example.status)
            #expect(error.message.contains(example.mentions), "\(error.message)")
        }
    }

    @Test("unknown paths are 404, known paths with another method 405 with the allowed ones, verbs do not fall through")
    func routing() {
        if case .notFound = routes.match(method: "GET", path: "/v2/deliveries") {} else { Issue.record("expected not found") }
        guard case .methodNotAllowed(let allowed) = routes.match(method: "PUT", path: "/v1/deliveries/d1") else {
            Issue.record("expected 405")
            return
        }
        #expect(Set(allowed) == ["GET", "DELETE"])
        guard case .methodNotAllowed(let confirm) = routes.match(method: "GET", path: "/v1/deliveries/d1:confirm") else {
            Issue.record("GET on the confirm verb must be 405, not GetDelivery of \"d1:confirm\"")
            return
        }
        #expect(confirm == ["POST"])
    }

    @Test("responses: the whole message, or response_body's field")
    func responses() throws {
        guard case .found(let route, _) = routes.match(method: "GET", path: "/v1/deliveries/d1/status") else {
            Issue.record("no route for GET /v1/deliveries/d1/status")
            return
        }
        var response = DeliveryV1.GetDeliveryStatusResponse()
        response.deliveryId = "d1"
        var status = DeliveryV1.DeliveryStatus()
        status.stage = .headedToPickup
        status.droneId = "drone-7"
        response.status = status
        let json = transcoder.responseBody(try response.jsonUTF8Bytes(), route: route)
        #expect(String(decoding: json, as: UTF8.self) == #"{"stage":"DELIVERY_STAGE_HEADED_TO_PICKUP","droneId":"drone-7"}"#)
    }

    @Test("path templates: nested fields, {name=segments/*}, ** and verbs")
    func templates() throws {
        #expect(try PathTemplate("/v1/{name=accounts/*}").match("/v1/accounts/a1") == ["name": "accounts/a1"])
        #expect(try PathTemplate("/v1/{name=accounts/*}").match("/v1/users/a1") == nil)
        #expect(try PathTemplate("/v1/packages/{package.package_id}").match("/v1/packages/p%201") == ["package.package_id": "p 1"])
        #expect(try PathTemplate("/v1/files/{path=**}").match("/v1/files/a/b/c") == ["path": "a/b/c"])
        #expect(try PathTemplate("/v1/{id}:track").match("/v1/x:track") == ["id": "x"])
        #expect(try PathTemplate("/v1/{id}:track").match("/v1/x") == nil)
        #expect(try PathTemplate("/v1/*/items").match("/v1/any/items") == [:])
        #expect(throws: PathTemplate.ParseError.self) { try PathTemplate("v1/x") }
        #expect(throws: PathTemplate.ParseError.self) { try PathTemplate("/v1/**/x") }
    }

    @Test("gRPC status codes map to HTTP statuses by the grpc-gateway table, except FAILED_PRECONDITION: 409")
    func statusTable() {
        let expected = [0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 409, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401]
        for (code, status) in expected { #expect(httpStatus(for: code) == status, "code \(code)") }
    }

    func path(_ target: String) -> String { String(target.split(separator: "?", maxSplits: 1)[0]) }

    func query(_ target: String) -> [(String, String)] {
        GatewayRequest(method: "GET", target: target, headers: [], body: []).queryParameters
    }

    /// The message decoded from `json` and written back as canonical JSON.
    func canonical(_ type: any JSONMessage.Type, _ json: JSONValue) throws -> String {
        try canonicalOpen(type, json)
    }

    private func canonicalOpen<M: JSONMessage>(_ type: M.Type, _ json: JSONValue) throws -> String {
        try transcoder.decode(M.self, json).jsonString()
    }
}
