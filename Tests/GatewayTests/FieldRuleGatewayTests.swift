import Foundation
@testable import Gateway
import Testing

/// A public request that breaks a field rule (buf.validate in the protos) answers 400 with the
/// google.rpc.Status JSON the services would send: its details hold a google.rpc.BadRequest
/// naming every violated field. The gateway's upstream client refuses it before sending, so the
/// service never sees it.
@Suite("Field rules at the gateway")
struct FieldRuleGatewayTests {
    /// The field violations of a google.rpc.Status JSON body, as (field, description).
    static func violations(_ answer: InProcessSystem.Answer) -> [(field: String, description: String)] {
        guard let details = answer.json["details"] as? [[String: Any]],
              let badRequest = details.first(where: { $0["@type"] as? String == "type.googleapis.com/google.rpc.BadRequest" }),
              let list = badRequest["fieldViolations"] as? [[String: Any]] else { return [] }
        return list.map { ($0["field"] as? String ?? "", $0["description"] as? String ?? "") }
    }

    @Test("a package that breaks three rules: 400, a BadRequest with the three fields, nothing sent upstream")
    func badPackage() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        let tag = String(repeating: "x", count: 300)
        let answer = await system.http("PUT", "/v1/packages/pkg-1", body: #"{"size":"PACKAGE_SIZE_UNSPECIFIED","weight":0,"tag":"\#(tag)"}"#,
                                       key: business.key)
        #expect(answer.status == 400, "\(answer)")
        #expect(answer.json["code"] as? Int == 3)
        let violations = Self.violations(answer)
        #expect(violations.map(\.field) == ["package.size", "package.weight", "package.tag"], "\(answer)")
        #expect(violations.map(\.description) == ["must not be in list [0]", "must be greater than 0", "must be at most 256 bytes"])
        #expect(system.faults.calls("PutPackage") == 0, "refused before it was sent")

        // The same package with the rules kept is created.
        #expect(await system.http("PUT", "/v1/packages/pkg-1", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":0.5,"tag":"t"}"#, key: business.key).status == 201)
        await system.stop()
    }

    @Test("a negative page size and an out-of-range location: 400 naming each field")
    func badQueryAndBody() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Contoso")
        let list = await system.http("GET", "/v1/deliveries?pageSize=-1", key: business.key)
        #expect(list.status == 400, "\(list)")
        #expect(Self.violations(list).map(\.field) == ["page_size"], "\(list)")

        let create = await system.http("POST", "/v1/deliveries", body: #"""
            {"pickupLocation":{"latitude":91,"longitude":0},"dropoffLocation":{"latitude":47.62,"longitude":-181},
             "packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1}}
            """#, key: business.key)
        #expect(create.status == 400, "\(create)")
        #expect(Self.violations(create).map(\.field).sorted() == ["dropoff_location.longitude", "pickup_location.latitude"], "\(create)")
        #expect(system.faults.calls("CreateDelivery") == 0)
        await system.stop()
    }
}
