import DroneDeliveryAPI
import ProtobufKit
import RPC
import Synchronization

/// Tenant isolation: a business sees and changes only its own data. Account fields in a request
/// (`owner.account_id`, `owner_id`, `account_id`, `package.owner_id`, `name` = accounts/{id}) are
/// filled with the caller's account when empty and refused when they name another; requests that
/// address a delivery or a package by id are checked against its stored owner (another
/// business's delivery is "not found", so ids do not leak).
final class Tenancy: Sendable {
    private let upstreams: UpstreamPool
    /// Owners never change, so they are cached (bounded).
    private let deliveryOwners = Mutex([String: String]())

    init(upstreams: UpstreamPool) {
        self.upstreams = upstreams
    }

    private var delivery: DeliveryV1.DeliveryService.Client { .init(upstreams.client("delivery")!) }
    private var packages: PackageV1.PackageService.Client { .init(upstreams.client("package")!) }

    func apply(to json: inout JSONValue, route: Route, schema: Schema, caller: Caller, options: CallOptions) async throws {
        guard let message = schema.messages[route.method.inputType] else { return }
        let account = caller.accountID
        for field in message.fields {
            switch (field.name, field.kind) {
            case ("account_id", .string), ("owner_id", .string):
                try claim(&json, [field.jsonName], account)
            case ("owner", .message) where field.typeName == "fabrikam.dronedelivery.common.v1.Owner":
                try claim(&json, [field.jsonName, "accountId"], account)
            case ("package", .message) where field.typeName == "fabrikam.dronedelivery.package.v1.Package":
                try claim(&json, [field.jsonName, "ownerId"], account)
                if let id = stringMember(json, [field.jsonName, "packageId"]) { try await checkPackage(id, owner: account, options: options, mayBeNew: true) }
            case ("name", .string) where route.method.service.hasSuffix("AccountsService"):
                if let name = stringMember(json, [field.jsonName]), name != "accounts/\(account)" {
                    throw GatewayError(403, 7, "\(name) is not the caller's account")
                }
            case ("delivery_id", .string) where route.method.name != "CreateDelivery":
                if let id = stringMember(json, [field.jsonName]) { try await checkDelivery(id, owner: account, options: options) }
            case ("package_id", .string) where route.method.service.hasSuffix("PackageService"):
                if let id = stringMember(json, [field.jsonName]) { try await checkPackage(id, owner: account, options: options, mayBeNew: false) }
            default: break
            }
        }
    }

    /// NOT_FOUND unless the delivery exists and belongs to `owner`.
    func checkDelivery(_ id: String, owner: String, options: CallOptions) async throws {
        var stored = deliveryOwners.withLock { $0[id] }
        if stored == nil {
            var request = DeliveryV1.GetDeliveryRequest()
            request.deliveryId = id
            do {
                let found = try await delivery.getDelivery(request, options: options)
                stored = found.owner?.accountId ?? ""
                if let stored, !stored.isEmpty { deliveryOwners.withLock { if $0.count > 100_000 { $0.removeAll() }; $0[id] = stored } }
            } catch let error as RPCError where error.code == .notFound {
                throw GatewayError(404, 5, "delivery \(id) does not exist")
            }
        }
        if stored != owner { throw GatewayError(404, 5, "delivery \(id) does not exist") }
    }

    private func checkPackage(_ id: String, owner: String, options: CallOptions, mayBeNew: Bool) async throws {
        var request = PackageV1.GetPackageRequest()
        request.packageId = id
        do {
            let package = try await packages.getPackage(request, options: options)
            if package.ownerId != owner { throw GatewayError(404, 5, "package \(id) does not exist") }
        } catch let error as RPCError where error.code == .notFound {
            if !mayBeNew { throw GatewayError(404, 5, "package \(id) does not exist") }
        }
    }

    /// Sets the account at `path` when it is empty; refuses another account.
    private func claim(_ json: inout JSONValue, _ path: [String], _ account: String) throws {
        if let present = stringMember(json, path), !present.isEmpty {
            if present != account { throw GatewayError(403, 7, "\(path.joined(separator: ".")) \(present) is not the caller's account") }
            return
        }
        try setMember(&json, path: path, value: .string(account), append: false)
    }
}
