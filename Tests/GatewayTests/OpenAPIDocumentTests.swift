import DroneDeliveryAPI
import Foundation
@testable import Gateway
import GRPCProtos
import ProtobufKit
import Testing

/// The OpenAPI document says what the gateway enforces (issue 14, item 7): the field rules as
/// JSON Schema, and one path per resource, with the methods the router allows on it. The
/// running gateway is held to it by schemathesis (`make contract-test`); these pin the pieces.
@Suite("The OpenAPI document: field rules and one path per resource")
struct OpenAPIDocumentTests {
    static let files = wellKnownFiles + grpcProtoFiles + droneDeliveryProtoFiles
    let routes = try! RouteTable(files: files, services: Gateway.publicServices)
    let document: [String: Any]

    init() throws {
        let routes = try RouteTable(files: Self.files, services: Gateway.publicServices)
        let bytes = OpenAPIDocument(routes: routes, schema: Schema(files: Self.files), publicRoutes: ["POST /v1/accounts"]).json()
        document = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    var paths: [String: [String: Any]] { document["paths"] as? [String: [String: Any]] ?? [:] }
    func component(_ name: String) -> [String: Any] {
        ((document["components"] as? [String: Any])?["schemas"] as? [String: Any])?[name] as? [String: Any] ?? [:]
    }
    func property(_ schema: [String: Any], _ name: String) -> [String: Any] {
        (schema["properties"] as? [String: Any])?[name] as? [String: Any] ?? [:]
    }
    /// A property's schema without the `anyOf [schema, null]` wrapper of nullable fields.
    func unwrapped(_ schema: [String: Any]) -> [String: Any] {
        if let options = schema["anyOf"] as? [[String: Any]], options.count == 2, options[1]["type"] as? String == "null" { return options[0] }
        return schema
    }

    @Test("no two paths are templates of one path, and the package resource has GET, PUT and PATCH on one")
    func onePathPerResource() throws {
        var shapes: [String: String] = [:]
        for path in paths.keys {
            let shape = path.replacingOccurrences(of: #"\{[^}]*\}"#, with: "{}", options: .regularExpression)
            #expect(shapes[shape] == nil, "\(path) and \(shapes[shape] ?? "") are one path")
            shapes[shape] = path
        }
        let package = try #require(paths["/v1/packages/{package_id}"])
        #expect(Set(package.keys) == ["get", "put", "patch"])
        #expect(!paths.keys.contains { $0.contains("package_package_id") })
        #expect(paths["/v1/accounts/{name}"]?["get"] != nil)
    }

    @Test("the router's Allow for each path is the document's methods for it")
    func allowAgreesWithTheDocument() throws {
        for (path, operations) in paths where path != "/v1/deliveries/{delivery_id}/summary" {
            let concrete = path.replacingOccurrences(of: #"\{[^}]*\}"#, with: "x", options: .regularExpression)
            guard case .methodNotAllowed(let allowed) = routes.match(method: "TRACE", path: concrete) else {
                Issue.record("\(concrete): no 405 for TRACE")
                continue
            }
            #expect(Set(allowed.map { $0.lowercased() }) == Set(operations.keys), "\(path)")
        }
    }

    @Test("the field rules are in the schemas: required, ranges, enum values allowed, lengths, no unknown fields")
    func fieldRules() throws {
        // The package of PUT /v1/packages/{package_id} (the body, less the id the path binds).
        let package = try body("put")
        #expect(package["additionalProperties"] as? Bool == false)
        // size and weight are required: their default (left out) breaks a rule.
        #expect((package["required"] as? [String]) == ["size", "weight"])
        // package_id (required) is the path parameter: not empty.
        let get = try #require(paths["/v1/packages/{package_id}"]?["put"] as? [String: Any])
        let id = try #require((get["parameters"] as? [[String: Any]])?.first { $0["name"] as? String == "package_id" })
        #expect((id["schema"] as? [String: Any])?["minLength"] as? Int == 1)
        // weight: gt 0 (a weight of 0 is refused), so not nullable either.
        let weight = property(package, "weight")
        #expect(weight["exclusiveMinimum"] as? Int == 0)
        #expect(weight["type"] as? String == "number")
        // size: defined_only, not_in [0]: no PACKAGE_SIZE_UNSPECIFIED, by name or number.
        let sizes = try #require(property(package, "size")["enum"] as? [Any])
        #expect(sizes.contains { $0 as? String == "PACKAGE_SIZE_SMALL" })
        #expect(!sizes.contains { $0 as? String == "PACKAGE_SIZE_UNSPECIFIED" })
        #expect(!sizes.contains { $0 as? Int == 0 })
        // tag: max_bytes 256.
        let tag = unwrapped(property(package, "tag"))
        #expect(tag["maxLength"] as? Int == 256)
        // A field with no rules and a valid default accepts null (proto3 JSON's default).
        #expect((property(package, "ownerId")["anyOf"] as? [[String: Any]])?.last?["type"] as? String == "null")
    }

    @Test("a page size below 0 is outside the document, and a required query parameter is required")
    func queryParameters() throws {
        var pageSizes = 0
        for (_, operations) in paths {
            for (_, operation) in operations {
                for parameter in (operation as? [String: Any])?["parameters"] as? [[String: Any]] ?? [] where parameter["name"] as? String == "page_size" {
                    let schema = try #require(parameter["schema"] as? [String: Any])
                    #expect(schema["minimum"] as? Int == 0)
                    #expect(schema["type"] as? String == "integer")
                    pageSizes += 1
                }
            }
        }
        #expect(pageSizes > 0)
    }

    func body(_ method: String) throws -> [String: Any] {
        let operation = try #require(paths["/v1/packages/{package_id}"]?[method] as? [String: Any])
        let body = try #require(((operation["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any])
        return try #require(body["schema"] as? [String: Any])
    }

    @Test("the body of PUT /v1/packages/{package_id} leaves out the id the path binds; a PATCH requires nothing")
    func bodyWithoutBoundFields() throws {
        let put = try body("put")
        #expect(property(put, "packageId").isEmpty)
        #expect(!property(put, "weight").isEmpty)
        #expect((put["required"] as? [String] ?? []) == ["size", "weight"])
        let patch = try body("patch")
        #expect(property(patch, "packageId").isEmpty)
        #expect(patch["required"] == nil)
        // A patch changes what the body sets: a weight, when set, is above 0; 0 (or null) leaves
        // it as it is (the service's "every field the patch sets"), so both are in the document.
        let weight = try #require(unwrapped(property(patch, "weight"))["anyOf"] as? [[String: Any]])
        #expect(weight.count == 2 && weight[0]["const"] as? Int == 0 && weight[1]["exclusiveMinimum"] as? Int == 0)
        #expect(unwrapped(property(patch, "size"))["anyOf"] != nil)
    }

    @Test("what schemathesis found: the patch's mask, accounts the gateway fills, bodies that must set something, non-finite doubles, the Idempotency-Key's characters")
    func schemathesisFindings() throws {
        // update_mask ties the query to the body (a named field must be valid in the body):
        // described, not a parameter.
        let patch = try #require(paths["/v1/packages/{package_id}"]?["patch"] as? [String: Any])
        #expect(!((patch["parameters"] as? [[String: Any]]) ?? []).contains { $0["name"] as? String == "update_mask" })
        #expect((patch["description"] as? String)?.contains("update_mask") == true)
        // CreateDelivery's owner carries the account the gateway fills: not required.
        let create = component("fabrikam.dronedelivery.ingestion.v1.CreateDeliveryRequest")
        #expect(!((create["required"] as? [String]) ?? []).contains("owner"))
        #expect(((create["required"] as? [String]) ?? []).contains("packageInfo"))
        // A tracking link's accountId: "" (and null) is the caller's account.
        let link = try #require(paths["/v1/deliveries/{delivery_id}:trackingLink"]?["post"] as? [String: Any])
        let linkBody = try #require(((((link["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"]) as? [String: Any])
        let account = try #require(unwrapped(property(linkBody, "accountId"))["anyOf"] as? [[String: Any]])
        #expect(account.first?["const"] as? String == "")
        #expect(!((linkBody["required"] as? [String]) ?? []).contains("accountId"))
        // A reschedule must change something: its body is required.
        let reschedule = try #require(paths["/v1/deliveries/{delivery_id}/schedule"]?["patch"] as? [String: Any])
        #expect((reschedule["requestBody"] as? [String: Any])?["required"] as? Bool == true)
        // A response double can be "Infinity" (a sum of finite weights can overflow).
        let total = property(component("fabrikam.dronedelivery.package.v1.PackageSummary.Output"), "totalWeight")
        #expect(((total["anyOf"] as? [[String: Any]])?.last?["enum"] as? [String]) == ["NaN", "Infinity", "-Infinity"])
        // Idempotency-Key: visible ASCII.
        let post = try #require(paths["/v1/deliveries"]?["post"] as? [String: Any])
        let key = try #require((post["parameters"] as? [[String: Any]])?.first { $0["name"] as? String == "Idempotency-Key" })
        #expect((key["schema"] as? [String: Any])?["pattern"] as? String == "^[!-~]+$")
    }

    @Test("responses are the messages as written, without the request rules; a public route takes no credentials")
    func responsesAndSecurity() throws {
        let get = try #require(paths["/v1/packages/{package_id}"]?["get"] as? [String: Any])
        let ok = (((get["responses"] as? [String: Any])?["200"] as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any]
        #expect((ok?["schema"] as? [String: Any])?["$ref"] as? String == "#/components/schemas/fabrikam.dronedelivery.package.v1.Package.Output")
        #expect(component("fabrikam.dronedelivery.package.v1.Package.Output")["required"] == nil)
        let signUp = try #require(paths["/v1/accounts"]?["post"] as? [String: Any])
        #expect((signUp["security"] as? [Any])?.isEmpty == true)
    }
}
