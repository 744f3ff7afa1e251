@testable import DroneCTL
import DroneDeliveryAPI
import DynamicProtobuf
import GRPCProtos
import ProtobufKit
import Testing

/// How a request becomes the gateway's HTTP request, by the method's google.api.http rule, and
/// how the gateway's streamed answers are read back.
@Suite("HTTP transport")
struct HTTPMappingTests {
    static let pool = try! DescriptorPool(generated: droneDeliveryProtoFiles + grpcProtoFiles + ProtobufKit.wellKnownFiles)

    static func mapping<M: MethodSpec>(_ method: M.Type, _ request: M.Input) throws -> HTTPRequestMapping {
        let rule = try #require(M.descriptor.httpRule)
        return try HTTPRequestMapping(rule: rule, request: try JSONParser.parse(request.jsonUTF8Bytes()), type: M.descriptor.inputType,
                                      pool: pool) { "--" + $0 }
    }

    @Test("path variables, a :verb, and the remaining fields as query parameters")
    func pathVerbAndQuery() throws {
        var track = DeliveryV1.TrackDeliveryRequest()
        track.deliveryId = "dlv 1/2"
        let tracked = try Self.mapping(DeliveryV1.DeliveryService.Method.TrackDelivery.self, track)
        #expect(tracked.method == "GET")
        #expect(tracked.target == "/v1/deliveries/dlv%201%2F2:track")
        #expect(tracked.body == nil)

        var list = DeliveryV1.ListDeliveriesRequest()
        list.pageSize = 5
        list.pageToken = "t&k"
        let listed = try Self.mapping(DeliveryV1.DeliveryService.Method.ListDeliveries.self, list)
        #expect(listed.target == "/v1/deliveries?pageSize=5&pageToken=t%26k")
    }

    @Test("body \"*\" takes every field the path does not; a body field takes only that field")
    func bodies() throws {
        var create = IngestionV1.CreateDeliveryRequest()
        create.requestId = "r-1"
        create.expedited = true
        let created = try Self.mapping(IngestionV1.IngestionService.Method.CreateDelivery.self, create)
        #expect(created.method == "POST")
        #expect(created.target == "/v1/deliveries")
        #expect(created.body.map { String(decoding: $0, as: UTF8.self) } == #"{"expedited":true,"requestId":"r-1"}"#)

        var put = PackageV1.PutPackageRequest()
        var package = PackageV1.Package()
        package.packageId = "pkg-1"
        package.tag = "fragile"
        put.package = package
        let mapped = try Self.mapping(PackageV1.PackageService.Method.PutPackage.self, put)
        #expect(mapped.method == "PUT")
        #expect(mapped.target == "/v1/packages/pkg-1")
        #expect(mapped.body.map { String(decoding: $0, as: UTF8.self) } == #"{"tag":"fragile"}"#)
    }

    @Test("a path variable with a segment pattern keeps its slashes")
    func segmentPattern() throws {
        var get = AccountsV1.GetAccountRequest()
        get.name = "accounts/acct-1"
        #expect(try Self.mapping(AccountsV1.AccountsService.Method.GetAccount.self, get).target == "/v1/accounts/acct-1")
    }

    @Test("a path field left empty is a usage error naming its flag")
    func emptyPathField() throws {
        #expect(throws: UsageError("--delivery_id is required over HTTP: it is part of the path /v1/deliveries/{delivery_id}:track")) {
            try Self.mapping(DeliveryV1.DeliveryService.Method.TrackDelivery.self, DeliveryV1.TrackDeliveryRequest())
        }
    }

    @Test("Server-Sent Events: messages, heartbeats, the error event, split anywhere")
    func serverSentEvents() {
        let text = ": heartbeat\n\nevent: message\ndata: {\"a\":1}\n\nevent: message\r\ndata: {\"a\":2}\r\n\r\nevent: error\ndata: {\"code\":5}\n\n"
        var events = StreamEvents(isSSE: true)
        var seen: [StreamEvents.Event] = []
        for byte in text.utf8 { seen += events.feed([byte]) }
        seen += events.finish()
        #expect(seen == [.message(Array(#"{"a":1}"#.utf8)), .message(Array(#"{"a":2}"#.utf8)), .error(Array(#"{"code":5}"#.utf8))])
    }

    @Test("NDJSON: result lines, blank heartbeat lines, the error line")
    func ndjson() {
        var events = StreamEvents(isSSE: false)
        let seen = events.feed(Array("{\"result\":{\"a\":1}}\n\n{\"error\":{\"code\":14,\"message\":\"down\"}}\n".utf8)) + events.finish()
        #expect(seen == [.message(Array(#"{"a":1}"#.utf8)), .error(Array(#"{"code":14,"message":"down"}"#.utf8))])
    }

    @Test("failed answers: the google.rpc.Status body's code, else the HTTP status's")
    func failures() {
        let outcome = HTTPTransport<TypedCodec<DeliveryV1.GetDeliveryRequest, DeliveryV1.Delivery>>.failure(
            status: 404, body: Array(#"{"code":5,"message":"no such delivery"}"#.utf8))
        #expect(outcome.code == .notFound)
        #expect(outcome.message == "no such delivery")
        let plain = HTTPTransport<TypedCodec<DeliveryV1.GetDeliveryRequest, DeliveryV1.Delivery>>.failure(status: 503, body: Array("busy".utf8))
        #expect(plain.code == .unavailable)
        #expect(ExitStatus.forStatus(plain.code) == 78)
    }

    @Test("grpc-timeout text")
    func grpcTimeout() {
        #expect(GRPCTimeoutText.format(.milliseconds(1500)) == "1500000u")
        #expect(GRPCTimeoutText.format(.seconds(3600 * 30)) == "108000S")
    }
}
