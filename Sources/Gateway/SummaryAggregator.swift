import DroneDeliveryAPI
import ProtobufKit
import RPC

/// `GET /v1/deliveries/{id}/summary`: one public call that joins the delivery and its status
/// (Delivery, essential), its package (Package) and its drone assignment (Drone Scheduler).
/// When a non-essential backend is down the answer is partial and says what is missing. The
/// package is read as the caller's: a package that is not theirs is left out, as if absent.
struct SummaryAggregator {
    let upstreams: UpstreamPool

    /// The delivery id when `path` is a summary path. Throws a 400 naming the id when it does
    /// not decode (a malformed %XX escape, or bytes that are not UTF-8).
    static func match(_ path: String) throws(GatewayError) -> String? {
        guard path.utf8.count > 8, path.utf8.suffix(8).elementsEqual("/summary".utf8) else { return nil }  // most requests stop here
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "v1", parts[2] == "deliveries", parts[4] == "summary", !parts[3].isEmpty else { return nil }
        guard let id = percentDecode(String(parts[3])) else {
            throw GatewayError(400, 3, "the path's value for delivery_id, \"\(parts[3])\", is not valid: a malformed %XX escape or bytes that are not UTF-8")
        }
        return id
    }

    func summary(_ deliveryID: String, owner: String, options: CallOptions) async throws -> [UInt8] {
        let delivery = DeliveryV1.DeliveryService.Client(upstreams.client("delivery")!)
        var get = DeliveryV1.GetDeliveryRequest()
        get.deliveryId = deliveryID
        var statusRequest = DeliveryV1.GetDeliveryStatusRequest()
        statusRequest.deliveryId = deliveryID
        async let entity = delivery.getDelivery(get, options: options)
        async let status = delivery.getDeliveryStatus(statusRequest, options: options)
        let (found, live) = try await (entity, status)

        var members = [JSONMember("delivery", try JSONParser.parse(try found.jsonUTF8Bytes())),
                       JSONMember("status", try JSONParser.parse(try (live.status ?? DeliveryV1.DeliveryStatus()).jsonUTF8Bytes()))]
        var missing: [String] = []
        async let package = optional {
            guard let client = upstreams.client("package"), !found.packageId.isEmpty else { return nil }
            var request = PackageV1.GetPackageRequest()
            request.packageId = found.packageId
            request.ownerId = owner
            do {
                return try JSONParser.parse(try await PackageV1.PackageService.Client(client).getPackage(request, options: options).jsonUTF8Bytes())
            } catch let error as RPCError where error.code == .notFound {
                return nil
            }
        }
        async let assignment = optional {
            guard let client = upstreams.client("dronescheduler"), !found.droneId.isEmpty else { return nil }
            var request = DroneSchedulerV1.GetAssignmentRequest()
            request.deliveryId = deliveryID
            return try JSONParser.parse(try await DroneSchedulerV1.DroneSchedulerService.Client(client).getAssignment(request, options: options).jsonUTF8Bytes())
        }
        switch await package {
        case .success(let value?): members.append(JSONMember("package", value))
        case .success(nil): break
        case .failure: missing.append("package")
        }
        switch await assignment {
        case .success(let value?): members.append(JSONMember("droneAssignment", value))
        case .success(nil): break
        case .failure: missing.append("droneAssignment")
        }
        members.append(JSONMember("partial", .bool(!missing.isEmpty)))
        if !missing.isEmpty { members.append(JSONMember("unavailable", .array(missing.map { .string($0) }))) }
        var writer = JSONWriter()
        writer.value(.object(members))
        return writer.bytes
    }

    private func optional(_ body: () async throws -> JSONValue?) async -> Result<JSONValue?, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }
}
