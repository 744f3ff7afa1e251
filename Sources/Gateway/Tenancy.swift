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
                if let id = string(json, [field.jsonName, "packageId"]) { try await checkPackage(id, owner: account, options: options, mayBeNew: true) }
            case ("name", .string) where route.method.service.hasSuffix("AccountsService"):
                if let name = string(json, [field.jsonName]), name != "accounts/\(account)" {
                    throw GatewayError(403, 7, "\(name) is not the caller's account")
                }
            case ("delivery_id", .string) where route.method.name != "CreateDelivery":
                if let id = string(json, [field.jsonName]) { try await checkDelivery(id, owner: account, options: options) }
            case ("package_id", .string) where route.method.service.hasSuffix("PackageService"):
                if let id = string(json, [field.jsonName]) { try await checkPackage(id, owner: account, options: options, mayBeNew: false) }
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
        if let present = string(json, path), !present.isEmpty {
            if present != account { throw GatewayError(403, 7, "\(path.joined(separator: ".")) \(present) is not the caller's account") }
            return
        }
        json = setting(json, path, .string(account))
    }

    private func string(_ json: JSONValue, _ path: [String]) -> String? {
        var current = json
        for key in path {
            guard case .object(let members) = current else { return nil }
            // The caller may have used the proto name (owner_id) or the JSON name (ownerId).
            guard let member = members.first(where: { $0.key == key }) ?? members.first(where: { $0.key == snakeCase(key) }) else { return nil }
            current = member.value
        }
        if case .string(let text) = current { return text }
        return nil
    }

    private func setting(_ json: JSONValue, _ path: [String], _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = json else { return json }
        let key = path[0]
        let index = members.firstIndex { $0.key == key || $0.key == snakeCase(key) }
        if path.count == 1 {
            if let index { members[index].value = value } else { members.append(JSONMember(key, value)) }
        } else {
            let child = setting(index.map { members[$0].value } ?? .object([]), Array(path.dropFirst()), value)
            if let index { members[index].value = child } else { members.append(JSONMember(key, child)) }
        }
        return .object(members)
    }
}

func snakeCase(_ camel: String) -> String {
    var out = ""
    for character in camel {
        if character.isUppercase { out += "_" + character.lowercased() } else { out.append(character) }
    }
    return out
}
