import DroneDeliveryAPI
@testable import Gateway
import GRPCProtos
import ProtobufKit
import Testing

/// A path value that does not decode (a malformed %XX escape, or escaped bytes that are not
/// UTF-8) names a route that exists: the answer is 400 naming the field, not 404 "no route".
@Suite("Path values that do not decode")
struct PathDecodingTests {
    static let files = wellKnownFiles + grpcProtoFiles + droneDeliveryProtoFiles
    let routes = try! RouteTable(files: files, services: Gateway.publicServices)

    @Test("the route table reports the route and the field whose value does not decode", arguments: [
        ("GET", "/v1/deliveries/%FF", "delivery_id"),          // a lone continuation-range byte: not UTF-8
        ("GET", "/v1/deliveries/%C3%28/status", "delivery_id"), // a lead byte followed by '(': not UTF-8
        ("DELETE", "/v1/deliveries/d%zz", "delivery_id"),       // not an escape at all
    ])
    func routeTable(method: String, path: String, field: String) {
        guard case .undecodable(let route, let named, let raw) = routes.match(method: method, path: path) else {
            Issue.record("\(method) \(path): \(routes.match(method: method, path: path))")
            return
        }
        #expect(route.httpMethod == method)
        #expect(named == field)
        #expect(path.contains(raw), "\(raw)")
    }

    @Test("a good escape still decodes, and a path of another shape is still 404")
    func goodEscapesAndOtherShapes() {
        guard case .found(_, let variables) = routes.match(method: "GET", path: "/v1/deliveries/d%C3%A9") else {
            Issue.record("no route for an escaped é")
            return
        }
        #expect(variables["delivery_id"] == "dé")
        if case .notFound = routes.match(method: "GET", path: "/v2/deliveries/%FF") {} else { Issue.record("expected not found") }
    }

    @Test("the gateway answers 400 naming the field, for a route and for the summary")
    func gatewayAnswers() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        for path in ["/v1/deliveries/%FF", "/v1/deliveries/%FF/summary", "/v1/packages/p%C3%28"] {
            let answer = await system.http("GET", path, key: business.key)
            #expect(answer.status == 400 && answer.json["code"] as? Int == 3, "\(path): \(answer)")
            let message = answer.json["message"] as? String ?? ""
            #expect(message.contains("_id") && message.contains("not UTF-8"), "\(path): \(message)")
        }
        await system.stop()
    }
}
