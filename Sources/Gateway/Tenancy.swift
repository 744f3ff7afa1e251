import DroneDeliveryAPI
import Logging
import ProtobufKit
import RPC
import Synchronization

/// Tenant isolation: a business sees and changes only its own data. Applies a route's
/// `TenancyPlan` to a request: account fields are filled with the caller's account or refused,
/// deliveries are checked against their owner, the package a new delivery names must not be
/// another business's. Someone else's account or delivery is "not found" (404), so ids do not
/// leak; the services confine the remaining ids to the account the request names.
final class Tenancy: Sendable {
    private let upstreams: UpstreamPool
    private let logger: Logger
    /// Owners never change, so they are cached (bounded).
    private let deliveryOwners = Mutex([String: String]())

    init(upstreams: UpstreamPool, logger: Logger) {
        self.upstreams = upstreams
        self.logger = logger
    }

    private var delivery: DeliveryV1.DeliveryService.Client { .init(upstreams.client("delivery")!) }
    private var packages: PackageV1.PackageService.Client { .init(upstreams.client("package")!) }

    /// Where a delivery the caller owns is.
    enum DeliveryPlace: Sendable {
        /// Delivery knows it.
        case scheduled
        /// Accepted, still on Ingestion's queue (or dead-lettered from it): Delivery does not know it yet.
        case queued(IngestionV1.QueuedDelivery)
    }

    /// Applies `plan` to the request message `json`. Returns where the route's own delivery (its
    /// top-level `delivery_id`) is, when it has one.
    func apply(_ plan: TenancyPlan, to json: inout JSONValue, caller: Caller, options: CallOptions) async throws -> DeliveryPlace? {
        var place: DeliveryPlace?
        for rule in plan.rules {
            switch rule {
            case .account(let path):
                try claim(&json, path, caller.accountID)
            case .accountName(let path):
                if let name = stringMember(json, path), name != "accounts/\(caller.accountID)" {
                    throw GatewayError(404, 5, "account \(name.dropFirst("accounts/".count)) does not exist")
                }
            case .delivery(let path):
                guard let id = stringMember(json, path), !id.isEmpty else { continue }
                let found = try await checkDelivery(id, owner: caller.accountID, options: options)
                if path == plan.deliveryPath { place = found }
            case .packageForNewDelivery(let path):
                guard let id = stringMember(json, path), !id.isEmpty else { continue }
                try await checkPackageIsFree(id, owner: caller.accountID, options: options)
            case .user(let path):
                guard !caller.userID.isEmpty else { continue }
                if let present = try idMember(json, path), !present.isEmpty {
                    if present != caller.userID { throw GatewayError(403, 7, "this API key acts for user \(caller.userID), not \(present)") }
                } else {
                    try setMember(&json, path: path, value: .string(caller.userID), append: false)
                }
            }
        }
        return place
    }

    /// Where the caller's delivery is; NOT_FOUND unless it exists (in Delivery, or on Ingestion's
    /// queue) and belongs to `owner`.
    @discardableResult
    func checkDelivery(_ id: String, owner: String, options: CallOptions) async throws -> DeliveryPlace {
        // Made only when thrown: the message's interpolation cost every request an allocation.
        var notFound: GatewayError { GatewayError(404, 5, "delivery \(id) does not exist") }
        if let stored = deliveryOwners.withLock({ $0[id] }) {
            if stored != owner { throw notFound }
            return .scheduled
        }
        if let stored = try await scheduledOwner(id, options: options) {
            if stored != owner { throw notFound }
            return .scheduled
        }
        // Not in Delivery yet: it may still wait on Ingestion's queue, which answers only to its
        // owner (the call carries the caller's account).
        if let queued = try await queuedDelivery(id, options: options) { return .queued(queued) }
        // Workflow schedules a delivery before it takes the request off the queue: gone from the
        // queue may mean Delivery knows it now.
        if let stored = try await scheduledOwner(id, options: options), stored == owner { return .scheduled }
        throw notFound
    }

    /// The owner Delivery has for a delivery (cached), nil when Delivery does not know it.
    private func scheduledOwner(_ id: String, options: CallOptions) async throws -> String? {
        var request = DeliveryV1.GetDeliveryRequest()
        request.deliveryId = id
        do {
            let found = try await delivery.getDelivery(request, options: options)
            let stored = found.owner?.accountId ?? ""
            if !stored.isEmpty { deliveryOwners.withLock { if $0.count > 100_000 { $0.removeAll() }; $0[id] = stored } }
            return stored
        } catch let error as RPCError where error.code == .notFound {
            return nil
        }
    }

    /// A delivery that Ingestion has accepted but Workflow has not finished with, from Ingestion
    /// (which checks the caller's account); nil when it is not on the queue, or when Ingestion
    /// cannot say (down, or an older Ingestion): then Delivery's answer stands.
    func queuedDelivery(_ deliveryID: String, options: CallOptions) async throws -> IngestionV1.QueuedDelivery? {
        guard let ingestion = upstreams.client("ingestion") else { return nil }
        var request = IngestionV1.GetQueuedDeliveryRequest()
        request.deliveryId = deliveryID
        do {
            return try await IngestionV1.IngestionService.Client(ingestion).getQueuedDelivery(request, options: options)
        } catch let error as RPCError {
            if error.code != .notFound {
                logger.warning("cannot ask Ingestion for a queued delivery", metadata: ["delivery_id": "\(deliveryID)", "error": "\(error)"])
            }
            return nil
        }
    }

    /// A package id a new delivery may use: unknown, or the caller's (409 when another business has it).
    private func checkPackageIsFree(_ id: String, owner: String, options: CallOptions) async throws {
        var request = PackageV1.GetPackageRequest()
        request.packageId = id
        do {
            let package = try await packages.getPackage(request, options: options)
            if !package.ownerId.isEmpty, package.ownerId != owner {
                throw GatewayError(409, 6, "package id \(id) is already in use; choose another (or leave packageInfo.packageId out)")
            }
        } catch let error as RPCError where error.code == .notFound {
            return
        }
    }

    /// Sets the account at `path` when it is empty; another account is 404.
    private func claim(_ json: inout JSONValue, _ path: [String], _ account: String) throws {
        if let present = try idMember(json, path), !present.isEmpty {
            if present != account { throw GatewayError(404, 5, "account \(present) does not exist") }
            return
        }
        try setMember(&json, path: path, value: .string(account), append: false)
    }
}

/// An id the gateway fills or checks: nil when it is absent or null; a value of another type (or
/// an object on its path that is not one) is refused with 400 rather than overwritten, so a
/// request that is not valid JSON for its message is never made valid by the gateway.
func idMember(_ json: JSONValue, _ path: [String]) throws -> String? {
    var current = json
    for (depth, key) in path.enumerated() {
        guard case .object(let members) = current else {
            throw TranscodingError(400, "\(path[..<depth].joined(separator: ".")) must be an object")
        }
        guard let index = memberIndex(members, key) else { return nil }
        current = members[index].value
        if case .null = current { return nil }
    }
    guard case .string(let text) = current else { throw TranscodingError(400, "\(path.joined(separator: ".")) must be a string") }
    return text
}
