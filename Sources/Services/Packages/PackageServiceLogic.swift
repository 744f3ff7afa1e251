import DroneDeliveryAPI
import ProtobufKit
import RPC
import ServiceKit

/// Package: create-or-replace by the caller's id (Workflow uses the delivery's package id, so a
/// repeated saga step changes nothing), get, partial update, summary per owner, and delete for
/// the Supervisor's compensation. Packages belong to their owner: another owner's id is never
/// replaced, and a request that names an owner sees nothing of another's package.
public struct PackageServiceLogic: PackageV1.PackageService.Handler {
    let store: any PackageStore
    public init(store: any PackageStore) { self.store = store }

    // Requests arrive checked against their field rules (buf.validate in package.proto): a
    // package with an id, a defined size, a positive weight, a tag of at most 256 bytes.
    public func putPackage(_ request: PackageV1.PutPackageRequest, context: ServerContext) async throws -> PackageV1.PutPackageResponse {
        guard var package = request.package else { throw RPCError(.invalidArgument, "package is required") }
        let now = Timestamp.now
        package.createTime = now
        package.updateTime = now
        guard case .stored(let stored, let created) = try await store.put(package) else {
            // Ids are unique across owners: this one is taken, and nothing of that package is shown.
            throw RPCError(.alreadyExists, "package id \(package.packageId) is already in use; choose another")
        }
        var response = PackageV1.PutPackageResponse()
        response.package = stored
        response.created = created
        return response
    }

    public func getPackage(_ request: PackageV1.GetPackageRequest, context: ServerContext) async throws -> PackageV1.Package {
        guard let package = try await store.package(id: request.packageId), Self.visible(package, to: request.ownerId) else {
            throw RPCError(.notFound, "package \(request.packageId) does not exist")
        }
        return package
    }

    /// Whether a request naming `owner` (empty: an internal caller naming none) may see `package`.
    static func visible(_ package: PackageV1.Package, to owner: String) -> Bool {
        owner.isEmpty || package.ownerId == owner
    }

    /// A patch names only what changes, so Package's field rules do not apply to it (the request
    /// field is `ignore = IGNORE_ALWAYS`); they apply to the package the patch makes, here.
    public func updatePackage(_ request: PackageV1.UpdatePackageRequest, context: ServerContext) async throws -> PackageV1.Package {
        guard let patch = request.package, !patch.packageId.isEmpty else { throw RPCError(.invalidArgument, "package.package_id is required") }
        // No mask: every field the patch sets. A mask: exactly the fields it names.
        let updatable: Set<String> = ["size", "weight", "tag"]
        var paths = request.updateMask?.paths ?? []
        if paths.isEmpty {
            if patch.size != .unspecified { paths.append("size") }
            if patch.weight != 0 { paths.append("weight") }
            if !patch.tag.isEmpty { paths.append("tag") }
        }
        if let unknown = paths.first(where: { !updatable.contains($0) }) {
            throw RPCError(.invalidArgument, "update_mask path \"\(unknown)\" cannot be updated (updatable: size, weight, tag)")
        }
        let fields = paths
        let owner = patch.ownerId
        let updated = try await store.update(id: patch.packageId) { package in
            guard Self.visible(package, to: owner) else { throw RPCError(.notFound, "package \(patch.packageId) does not exist") }
            for path in fields {
                switch path {
                case "size": package.size = patch.size
                case "weight": package.weight = patch.weight
                default: package.tag = patch.tag
                }
            }
            let violations = package.validationViolations()
            if !violations.isEmpty {
                throw RPCError(fieldRuleViolations: violations.map { ValidationViolation(field: "package." + $0.field, ruleID: $0.ruleID, message: $0.message) },
                               in: PackageV1.UpdatePackageRequest.protoMessageName)
            }
            package.updateTime = .now
        }
        guard let updated else { throw RPCError(.notFound, "package \(patch.packageId) does not exist") }
        return updated
    }

    public func getPackageSummary(_ request: PackageV1.GetPackageSummaryRequest, context: ServerContext) async throws -> PackageV1.PackageSummary {
        return try await store.summary(ownerID: request.ownerId)
    }

    public func deletePackage(_ request: PackageV1.DeletePackageRequest, context: ServerContext) async throws -> Google.Protobuf.Empty {
        guard let package = try await store.package(id: request.packageId), Self.visible(package, to: request.ownerId) else {
            throw RPCError(.notFound, "package \(request.packageId) does not exist")
        }
        // Compensation removes only the package its own delivery created.
        if !request.deliveryId.isEmpty, package.deliveryId != request.deliveryId {
            throw RPCError(.failedPrecondition, "package \(request.packageId) belongs to delivery \(package.deliveryId), not \(request.deliveryId)")
        }
        _ = try await store.delete(id: request.packageId)
        return Google.Protobuf.Empty()
    }
}
