import DeliveryHistory
import DroneDeliveryAPI
import Foundation
import Packages
import RPC
import ServiceKit
import Testing
import TestSupport

/// The services keep each business's packages and history to itself when a request names an
/// owner (the gateway always does; the Supervisor does for its compensations), whatever the
/// gateway checked before.
@Suite("Ownership in the services: packages and history answer only their owner")
struct OwnershipTests {
    func path(_ name: String) throws -> String { try makeTemporaryDirectory("ownership").appendingPathComponent(name).path }

    func package(_ id: String, owner: String, delivery: String = "", weight: Double = 1.5) -> PackageV1.PutPackageRequest {
        var package = PackageV1.Package()
        package.packageId = id
        package.ownerId = owner
        package.deliveryId = delivery
        package.size = .small
        package.weight = weight
        var request = PackageV1.PutPackageRequest()
        request.package = package
        return request
    }

    @Test("another owner's id: create-or-replace is ALREADY_EXISTS, get/update/delete naming an owner are NOT_FOUND; the package stays as it was")
    func packages() async throws {
        let logic = PackageServiceLogic(store: try SQLitePackageStore(path: try path("package.sqlite")))
        let context = ServerContext.inProcess()
        _ = try await logic.putPackage(package("pkg-1", owner: "acct-a", delivery: "dlv-a"), context: context)
        func code(_ body: () async throws -> Void) async -> RPCError.Code? {
            do { try await body(); return nil } catch let error as RPCError { return error.code } catch { return .unknown }
        }
        #expect(await code { _ = try await logic.putPackage(package("pkg-1", owner: "acct-b", delivery: "dlv-b", weight: 500), context: context) } == .alreadyExists)
        var get = PackageV1.GetPackageRequest()
        get.packageId = "pkg-1"
        get.ownerId = "acct-b"
        #expect(await code { _ = try await logic.getPackage(get, context: context) } == .notFound)
        var update = PackageV1.UpdatePackageRequest()
        update.package = package("pkg-1", owner: "acct-b", weight: 9).package
        #expect(await code { _ = try await logic.updatePackage(update, context: context) } == .notFound)
        // The Supervisor compensating B's saga, which named A's package.
        var delete = PackageV1.DeletePackageRequest()
        delete.packageId = "pkg-1"
        delete.deliveryId = "dlv-a"
        delete.ownerId = "acct-b"
        #expect(await code { _ = try await logic.deletePackage(delete, context: context) } == .notFound)
        get.ownerId = "acct-a"
        let stored = try await logic.getPackage(get, context: context)
        #expect(stored.ownerId == "acct-a" && stored.weight == 1.5 && stored.deliveryId == "dlv-a")
        // The owner itself: replaced, then deleted.
        #expect(try await logic.putPackage(package("pkg-1", owner: "acct-a", weight: 2), context: context).created == false)
        delete.ownerId = "acct-a"
        delete.deliveryId = ""
        _ = try await logic.deletePackage(delete, context: context)
        #expect(await code { _ = try await logic.getPackage(get, context: context) } == .notFound)
    }

    @Test("a delivery's history naming another owner is NOT_FOUND")
    func history() async throws {
        let logic = DeliveryHistoryServiceLogic(store: try SQLiteHistoryStore(path: try path("history.sqlite")))
        let context = ServerContext.inProcess()
        var event = DeliveryHistoryV1.DeliveryHistoryEvent()
        event.eventId = "evt-1"
        event.deliveryId = "dlv-a"
        var owner = CommonV1.Owner()
        owner.accountId = "acct-a"
        event.owner = owner
        event.stage = .created
        event.eventTime = .now
        var record = DeliveryHistoryV1.RecordDeliveryEventRequest()
        record.event = event
        _ = try await logic.recordDeliveryEvent(record, context: context)
        var request = DeliveryHistoryV1.GetDeliveryHistoryRequest()
        request.deliveryId = "dlv-a"
        request.ownerId = "acct-b"
        do {
            _ = try await logic.getDeliveryHistory(request, context: context)
            Issue.record("another owner read the history")
        } catch let error as RPCError {
            #expect(error.code == .notFound)
        }
        request.ownerId = "acct-a"
        #expect(try await logic.getDeliveryHistory(request, context: context).events.map(\.eventId) == ["evt-1"])
    }
}
